"""Hours of keyword-free negatives (bench.negatives) and the wake-word section of the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.negatives import NegativesConfig, banned_words, build_negatives, keyword_free, load_negatives, sentence
from kws.audio import SAMPLE_RATE


def test_sentences_never_hold_a_keyword():
    rng = np.random.default_rng(0)
    texts = [sentence(rng) for _ in range(2000)]  # one role's third of the grammar's word lists
    assert len(set(texts)) > 700 and all(keyword_free(t) for t in texts)
    banned = banned_words()
    assert {"stop", "stopped", "going", "know", "write", "upstairs", "nobody", "online"} <= banned
    assert not keyword_free("we should go home") and not keyword_free("I know that")
    assert not keyword_free("He STOPPED.") and keyword_free("yesterday it was often bright and golden")


def test_the_stream_is_built_in_segments_resumably_and_deterministically(tmp_path, monkeypatch):
    monkeypatch.setenv("KWS_CACHE", str(tmp_path / "cache"))
    cfg = NegativesConfig(hours=36 / 3600, segment_s=12.0, real_sets=(), asterisk_share=0.0)  # sentences over noise
    folder = build_negatives(cfg, progress=False)
    first = {p.name: p.read_bytes() for p in folder.glob("seg-*")}
    assert len(first) == 6
    (folder / "seg-0001.npy").unlink()  # a killed build: one segment missing
    (folder / "seg-0002.json").write_text("{")  # and one half written
    neg = load_negatives(cfg)
    assert {p.name: p.read_bytes() for p in folder.glob("seg-*")} == first  # rebuilt, byte for byte
    assert neg.wave.size == 36 * SAMPLE_RATE and neg.wave.dtype == np.float32
    s = neg.summary()
    assert s["utterances"]["sentence"] > 5 and s["speech_hours"]["sentence"] > 0.003
    assert all(keyword_free(e["text"]) for e in neg.events)
    for e in neg.events:  # every utterance is where its event says
        a, b = int(e["start_s"] * SAMPLE_RATE), int(e["end_s"] * SAMPLE_RATE)
        assert np.sqrt(np.mean(neg.wave[a:b] ** 2)) > 1e-3
    with pytest.raises(FileNotFoundError, match="segments missing"):
        load_negatives(NegativesConfig(hours=36 / 3600, segment_s=12.0, real_sets=(), asterisk_share=0.0, seed=5), build=False)


def test_an_integer_length_names_the_same_stream():
    # `hours=2` from Python and `--hours 2` (a float) from the command line must find one cache folder
    from bench.negatives import _key, cache_folder

    noise = np.zeros(16, np.float32)
    keys = {_key(NegativesConfig(hours=h), [], noise) for h in (2, 2.0)}
    assert len(keys) == 1
    assert cache_folder(NegativesConfig(hours=2), keys.pop()).name.startswith("neg-test-2h-seed0-")


def fake_run(tmp_path):
    from kws.runinfo import write_results

    def curve(scale):
        return [{"threshold": t, "false_accepts": int(100 * (1 - t) * scale), "fa_per_hour": 50 * (1 - t) * scale,
                 "miss_rate": {s: min(1.0, t * k) for s, k in (("20.0", 0.5), ("10.0", 0.7), ("0.0", 1.0))},
                 "wrong_word_rate": {"20.0": 0.0, "10.0": 0.0, "0.0": 0.0},
                 "false_accepts_in": {"real": 1, "sentence": int(10 * scale), "between": 0}}
                for t in np.linspace(0.3, 1.0, 15)]

    def model(label, scale):
        det = {"rate": 0.8, "words": 100, "ci95_speakers": [0.7, 0.9]}
        return {"kind": "model", "label": label, "protocol": "fold", "refs": ["a"], "path": "streaming path",
                "false_accept_sources": {"0.9": [{"said": "eight", "fired": "right", "false_accepts": int(7 * scale)},
                                                 {"said": "sentence", "fired": "go", "false_accepts": 2}]},
                "positives": {s: {"words": 100, "stream_seconds": 300} for s in ("20.0", "10.0", "0.0")},
                "speakers": 20, "negative_hours": 2.0, "curve": curve(scale),
                "at_target": {"20.0": {"threshold": 0.99, "detected": 0.5, "detected_ci95_speakers": [0.4, 0.6],
                                       "fa_per_hour": 0.0, "false_accepts": 0, "negative_hours": 2.0}},
                "calibrated": {"fa_per_hour": 0.5, "false_accepts": 1, "negative_hours": 2.0,
                               "false_accepts_in": {"real": 1, "sentence": 0, "between": 0},
                               "detected": {"20.0": det, "10.0": det, "0.0": det}}}

    rows = [{"kind": "negatives", "role": "false accepts", "hours": 2.0, "speech_hours": {"real": 0.4, "sentence": 0.8},
             "utterances": {"real": 2800, "sentence": 2000}, "real_speakers": 140, "noise_segments": {"real": 30}},
            model("model A", 1.0), model("model B", 3.0),
            {"kind": "form_cost", "ref": "a", "snr_db": None, "clips": 300, "speakers": 20, "clip_form": 0.9,
             "clip_form_ci95": [0.85, 0.93], "stream_form": 0.85, "stream_form_ci95": [0.8, 0.9],
             "difference": -0.05, "difference_ci95": [-0.08, -0.02]}]
    write_results(tmp_path / "wakeword.json", rows, command="python -m bench wakeword --cv x",
                  config={"target_fa_per_hour": 0.5}, protocol="hits and false accepts")


def test_the_report_section_draws_det_curves_with_the_hours_behind_every_figure(tmp_path):
    from bench.index import describe_command
    from bench.report.wakeword import det_points, load, write_markdown

    fake_run(tmp_path)
    md = write_markdown(tmp_path)
    text = md.read_text()
    assert "0 in 2.0 h (< 0.50/h)" in text and "0.50/h (1 in 2.0 h) (real 1)" in text
    assert "model A" in text and "-5.0 points" in text and "plots/det_curves.png" in text
    assert "| model A | 0.5 | 25.0 | 1 | 10 | 0 |" in text and "| model B | 0.9 | 15.0 | 1 | 30 | 0 |" in text
    assert "| model B | 0.9 | eight → right: 21, sentence → go: 2 |" in text
    from PIL import Image

    with Image.open(tmp_path / "plots" / "det_curves.png") as im:
        assert "DET curves" in im.text["Description"] and im.text["Source"] == "results/wakeword.json"
    from bench.plotting import text_overlaps
    from bench.report.wakeword import det_figure

    assert text_overlaps(det_figure(load(tmp_path))) == []  # the panels' labels and the legend read
    xs, ys = det_points(load(tmp_path)["results"][1], "20.0")
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) <= 0)  # a staircase: more false accepts, fewer misses
    assert "wake-word detection" in describe_command("python -m bench wakeword --cv runs/cv/x")
    assert json.loads((tmp_path / "wakeword.json").read_text())["metadata"]["command"].startswith("python -m bench")


def test_false_accepts_are_located_in_the_negatives():
    from bench.wakeword import fa_parts

    events = [{"kind": "real", "start_s": 1.0, "end_s": 1.5}, {"kind": "sentence", "start_s": 5.0, "end_s": 7.0}]
    assert fa_parts([1.2, 2.4, 2.6, 6.0, 7.9, 12.0], events) == {"real": 2, "sentence": 2, "between": 2}


def test_false_accepts_name_what_was_said():
    from bench.wakeword import fa_sources

    events = [{"kind": "real", "word": "eight", "start_s": 1.0, "end_s": 1.5},
              {"kind": "sentence", "text": "we had a calm time", "start_s": 5.0, "end_s": 7.0}]
    dets = [("right", 1.3), ("right", 2.2), ("go", 6.0), ("right", 1.4), ("no", 12.0)]
    assert fa_sources(dets, events) == [("eight", "right", 3), ("sentence", "go", 1), ("nothing", "no", 1)]
    assert fa_sources(dets, events, most=1) == [("eight", "right", 3)]


def test_the_bench_report_carries_the_section_and_writes_it_alone(tmp_path):
    from bench.report import build_report
    from test_bench_report import run_json

    out = tmp_path / "results"
    run = out / "bench" / "20250101T000000Z-abc-quick.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps(run_json()))
    fake_run(out)
    files = build_report([run], out)
    md = files.markdown.read_text()
    assert "## Wake-word detection: DET curves and false accepts per hour" in md and "](plots/det_curves.png)" in md
    assert (out / "plots" / "det_curves.png") in files.plots
    alone = (out / "wakeword.md").read_text()
    assert alone.startswith("# Wake-word detection") and "0 in 2.0 h (< 0.50/h)" in alone


def test_the_roles_share_no_sentence_voice_or_near_miss():
    from bench.negatives import ROLES, espeak_variants, near_miss_text, NEAR_MISSES, GSC_V2_WORDS

    rng = np.random.default_rng(1)
    texts = {r: {sentence(rng, r) for _ in range(500)} for r in ROLES}
    assert not (texts["test"] & texts["train"]) and not (texts["test"] & texts["calib"])
    assert not (texts["calib"] & texts["train"])
    voices = {r: set(espeak_variants(r)) for r in ROLES}
    assert not (voices["test"] & voices["train"]) and not (voices["test"] & voices["calib"])
    # training sentences become _unknown_: none may hold one of the 35 words, and no near miss is one
    train = [near_miss_text(rng) for _ in range(300)] + list(texts["train"])
    assert not any(t in GSC_V2_WORDS for x in train for t in x.split())
    assert not any(t in banned_words() for w in NEAR_MISSES for t in w.split())


def test_asterisk_prompt_names_with_a_command_are_left_out():
    from bench.negatives import asterisk_name_ok

    assert asterisk_name_ok("vm-press-pound") and asterisk_name_ok("digits/5")
    assert not asterisk_name_ok("agent-loggedoff") and not asterisk_name_ok("vm-no")
    assert not asterisk_name_ok("conf-leftconf")
