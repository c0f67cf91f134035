"""bench.realspeech: the cross-validation protocol (figures, intervals, folds, resumption, report)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _tone_words import write_tone_words
from bench import realspeech


def _rows(part: str, n_speakers: int, per: int, right: float, truth: str = "yes", pred_wrong: str = "no"):
    rows = []
    for s in range(n_speakers):
        for i in range(per):
            ok = (s * per + i) < right * n_speakers * per
            rows.append({"kind": "clip", "part": part, "fold": f"{1 + s % 5}/5", "file": f"{part}/{s}_{i}.wav",
                         "speaker": f"{part}-s{s}", "truth": truth, "pred": truth if ok else pred_wrong})
    return rows


def test_metrics_follow_the_words_a_set_holds():
    digits = _rows("fsdd", 5, 10, 0.8, truth="three", pred_wrong="two")
    core = _rows("gsc", 10, 10, 0.9) + [{**r, "truth": "_silence_", "pred": "_silence_"} for r in _rows("gsc", 2, 5, 1)]
    out = {(s["part"], s["metric"]): s for s in realspeech.summarize(digits + core)}
    assert ("fsdd", "acc12") not in out  # no 12-class figure where none of its words was said
    assert ("fsdd", "acc35") not in out and out[("fsdd", "acc")]["pooled"] == pytest.approx(0.8)
    assert out[("gsc", "acc12")]["clips"] == 110 and out[("gsc", "acc35")]["clips"] == 100
    assert out[("gsc", "acc35")]["pooled"] == pytest.approx(0.9)
    s = out[("gsc", "acc35")]
    assert s["pooled_ci95"][0] <= s["pooled"] <= s["pooled_ci95"][1]
    assert len(s["folds"]) == 5 and s["fold_mean_ci95"][0] <= s["fold_mean"] <= s["fold_mean_ci95"][1]
    assert s["speakers"] == 10  # silence clips are their own clusters, not speakers


def _corpus(root: Path) -> Path:
    """Six speakers saying three words twice: enough for five speaker-disjoint folds."""
    return write_tone_words(root, ["yes", "no", "up"], [f"spk{s}_{i}" for s in range(6) for i in range(2)], 150.0)


def test_cross_validation_trains_every_fold_scores_each_clip_once_and_resumes(tmp_path, monkeypatch):
    corpus = _corpus(tmp_path / "words")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"model: dscnn\ndata: folder:{corpus}\nepochs: 1\nbatch_size: 4\nprogress: false\n"
                      f"cache_dir: {tmp_path / 'cache'}\n")
    runs = tmp_path / "runs"
    out = realspeech.cross_validate(recipe, runs_dir=runs, out=tmp_path / "cv.json", command="test")
    doc = json.loads(out.read_text())
    clips = [r for r in doc["results"] if r["kind"] == "clip"]
    assert len(clips) == len({r["file"] for r in clips}) == 36  # every clip scored exactly once
    for r in clips:  # ... by the model of the fold that held its speaker out
        fold = int(r["fold"].split("/")[0])
        held = {c["speaker"] for c in clips if c["fold"] == r["fold"]}
        assert r["speaker"] in held and (runs / "tiny" / f"fold-{fold}" / "report.json").is_file()
    # yes/no/up are 12-class words, so there is a 12-class figure; no silence, so no separate word figure
    assert {r["metric"] for r in doc["results"] if r["kind"] == "summary"} == {"acc12", "acc"}
    assert doc["metadata"]["recipe_config"]["model"] == "dscnn" and doc["metadata"]["folds"][0] == "1/5"

    # a second call trains nothing: every fold is complete
    import training.trainer as trainer

    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("retrained a finished fold"))
    again = realspeech.cross_validate(recipe, runs_dir=runs, out=tmp_path / "cv2.json", command="test")
    assert json.loads(again.read_text())["results"][:3] == doc["results"][:3]

    # a finished fold of another recipe is never passed off as this one's
    recipe.write_text(recipe.read_text().replace("epochs: 1", "epochs: 2"))
    with pytest.raises(SystemExit, match="settings epochs differ.*remove it to retrain"):
        realspeech.cross_validate(recipe, runs_dir=runs, out=tmp_path / "cv3.json", command="test")

    (tmp_path / "results" / "cv").mkdir(parents=True)
    (tmp_path / "results" / "cv" / "tiny.json").write_text(out.read_text())
    md = realspeech.report(results=tmp_path / "results", out=tmp_path / "rs.md").read_text()
    acc = next(r for r in doc["results"] if r["kind"] == "summary" and r["metric"] == "acc")
    assert "| [tiny](" in md and f"{100 * acc['pooled']:.1f} %" in md


def test_init_from_another_recipe_uses_the_same_fold(tmp_path):
    from training.config import TrainConfig

    cfg = TrainConfig(model="dscnn", init_from="cv:base")
    with pytest.raises(SystemExit, match=r"fold 2/5 of that recipe is not trained yet"):
        realspeech.resolve_init(cfg, "2/5", tmp_path)
    (tmp_path / "base" / "fold-2").mkdir(parents=True)
    (tmp_path / "base" / "fold-2" / "report.json").write_text("{}")
    assert realspeech.resolve_init(cfg, "2/5", tmp_path).init_from == str(tmp_path / "base" / "fold-2")
    assert realspeech.resolve_init(TrainConfig(model="dscnn"), "2/5", tmp_path).init_from is None


def test_teacher_of_a_fold_and_a_single_run_recipe(tmp_path):
    from training.config import TrainConfig

    for d in ("teach/fold-3", "synthonly/all"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "report.json").write_text("{}")
    cfg = TrainConfig(model="dscnn", teacher="cv:teach", init_from="cv:synthonly")
    got = realspeech.resolve_init(cfg, "3/5", tmp_path)
    assert got.teacher == str(tmp_path / "teach" / "fold-3")  # the fold's own teacher
    assert got.init_from == str(tmp_path / "synthonly" / "all")  # one synthetic-only run serves every fold
    with pytest.raises(SystemExit, match="teacher cv:teach: fold 2/5"):
        realspeech.resolve_init(cfg, "2/5", tmp_path)


def test_held_out_figure_is_refused_for_data_that_holds_the_held_out_speakers():
    from bench.realspeech import heard_held_out_speakers

    assert heard_held_out_speakers("synth*0.3+gsc12-dev+fsdd-dev")
    assert heard_held_out_speakers("gsc:../shared/data/gsc12-dev")
    assert not heard_held_out_speakers("synth:400+folder:../shared/data/gsc12-dev")  # the split that holds them out
    assert not heard_held_out_speakers("synth:400")


@pytest.mark.skipif(not realspeech.GSC12_DEV.is_dir(), reason=f"needs the real recordings in {realspeech.GSC12_DEV}")
def test_report_scores_each_recipe_on_the_held_out_clips_from_its_fold_predictions(tmp_path):
    from kws.data import open_source
    from kws.runinfo import write_results

    held = open_source(realspeech.HELD_OUT, labels="35s").split("test")
    rows = [{"kind": "clip", "part": "gsc12-dev", "fold": "1/5", "file": f, "speaker": s or f"clip:{f}",
             "truth": held.labels[y], "pred": held.labels[y] if i % 2 == 0 else "_silence_"}
            for i, (f, s, y) in enumerate(zip(held.files, held.speakers, held.y))]
    rows.append({**rows[0], "file": "yes/not_a_held_out_clip.wav"})  # other clips do not count
    (tmp_path / "cv").mkdir()
    write_results(tmp_path / "cv" / "r.json", rows, command="test", recipe="recipes/r.yaml")
    text = realspeech.report(results=tmp_path).read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("| r (its fold models)"))
    assert f"| {len(held.files)} (" in line
    words = [i for i, y in enumerate(held.y) if held.labels[y] != "_silence_"]
    want35 = sum(1 for i in words if i % 2 == 0) / len(words)
    assert f"{100 * want35:.1f} %" in line.split("|")[4]
