"""Per-word thresholds: the trigger, its fast replay, calibration to a false-accept rate, and the
way they travel (checkpoint metadata -> ONNX metadata -> the live app, `--threshold` overriding them)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from bench.calibrate import combine, combine_points, fit_operating_points, fit_thresholds, peaks
from kws.audio import SAMPLE_RATE
from realtime.engine import DetectionEngine, EngineConfig, ScoreTrace, Trigger, replay_trigger
from realtime.predictor import from_function
from realtime.session import LiveSession, live_config, nearest_operating_point
from zoo.meta import CheckpointMeta

LABELS = ("_silence_", "yes", "no", "up", "stop")


def stepped(labels, cfg, ends, smoothed):
    """The reference: the live Trigger, hop by hop."""
    trig = Trigger(labels, cfg)
    return [d for h in range(len(ends)) if (d := trig.update(smoothed[h], int(ends[h]), h)) is not None]


def random_trace(rng: np.random.Generator, hops: int = 3000) -> np.ndarray:
    """Smoothed-looking scores: slow random walks through a softmax, so words rise and fall over hops."""
    walk = np.cumsum(rng.standard_normal((hops, len(LABELS))) * 0.6, axis=0)
    walk -= walk.mean(axis=0)
    z = np.exp(np.clip(walk, -30, 30))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_fast_replay_equals_the_live_trigger(seed, patience):
    rng = np.random.default_rng(seed)
    S = random_trace(rng)
    ends = (np.arange(len(S)) + 1) * 800
    for cfg in [EngineConfig(), EngineConfig(threshold=0.4, cooldown_s=0.0),
                EngineConfig(threshold=0.5, rearm=False, cooldown_s=0.2),
                EngineConfig(threshold=0.5, rearm=False, cooldown_s=0.0),
                EngineConfig(threshold=0.45, targets=("yes", "stop"), cooldown_s=1.0),
                EngineConfig(threshold=0.7, word_thresholds=(("no", 0.35), ("up", 0.9)))]:
        cfg = dataclasses.replace(cfg, patience=patience)
        ref = stepped(LABELS, cfg, ends, S)
        got = replay_trigger(LABELS, cfg, ends, S)
        assert len(ref) > 0 and [(d.label, d.hop, d.confidence) for d in got] == \
            [(d.label, d.hop, d.confidence) for d in ref]


def test_patience_needs_a_run_of_hops_as_the_leader_at_or_above_the_threshold():
    yes, no = np.eye(len(LABELS), dtype=np.float32)[[1, 2]]
    quiet = np.eye(len(LABELS), dtype=np.float32)[0]

    def mix(word, w):  # w of `word`, the rest _silence_
        return (w * word + (1 - w) * quiet).astype(np.float32)

    #      hop 0           1              2      3              4             5              6
    rows = [mix(yes, .7), mix(yes, .8), quiet, mix(yes, .7), mix(no, .7), mix(yes, .7), mix(yes, .9),
            mix(yes, .65), mix(yes, .7)]  # 7, 8
    S = np.stack(rows)
    ends = (np.arange(len(S)) + 1) * 800
    cfg = EngineConfig(threshold=0.6, cooldown_s=0.0, rearm=False)
    fired = {p: [d.hop for d in stepped(LABELS, dataclasses.replace(cfg, patience=p), ends, S)] for p in (1, 2, 3, 4)}
    assert fired[1] == [0, 1, 3, 4, 5, 6, 7, 8]  # today's rule: every hop at/above the threshold
    assert fired[2] == [1, 6, 7, 8]  # the second hop of each run; "no" at hop 4 broke the run of "yes"
    assert fired[3] == [7, 8] and fired[4] == [8]  # the run from hop 5 on: 0.65 is still >= 0.6
    for p, hops in fired.items():
        assert [d.hop for d in replay_trigger(LABELS, dataclasses.replace(cfg, patience=p), ends, S)] == hops
    # with re-arm, the run still fires once: a score that never dropped below the threshold does not re-arm it
    assert [d.hop for d in stepped(LABELS, dataclasses.replace(cfg, patience=3, rearm=True), ends, S)] == [7]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="patience"):
            EngineConfig(patience=bad)


def test_a_word_fires_at_its_own_threshold():
    cfg = EngineConfig(threshold=0.9, word_thresholds={"no": 0.5})  # a mapping is accepted too
    assert cfg.word_thresholds == (("no", 0.5),)
    trig = Trigger(LABELS, cfg)
    s = np.array([0.1, 0.0, 0.6, 0.2, 0.1], np.float32)
    assert trig.update(s, 800, 0).label == "no"
    assert Trigger(LABELS, dataclasses.replace(cfg, word_thresholds=())).update(s, 800, 0) is None
    trig.set_threshold(0.95)  # the UI's slider: one threshold for every word again
    assert trig.thresholds.tolist() == [0.95] * 5
    with pytest.raises(ValueError, match="not among the model's labels"):
        Trigger(LABELS, EngineConfig(word_thresholds={"left": 0.5}))
    with pytest.raises(ValueError, match="word thresholds"):
        EngineConfig(word_thresholds={"no": 1.5})


def trace_with_peaks(word_peaks: dict[str, list[float]], hops_between: int = 40) -> ScoreTrace:
    """A keyword-free trace whose only excursions are the given peaks (each a short bump of that word)."""
    rows = []
    for w, ps in word_peaks.items():
        c = LABELS.index(w)
        for p in ps:
            for a in (0.5, 1.0, 0.5):
                v = np.full(len(LABELS), 0.02, np.float32)
                v[c] = max(0.0, p * a)
                v[0] = 1 - v.sum() + v[0]
                rows.append(v)
            rows += [np.eye(len(LABELS), dtype=np.float32)[0]] * hops_between
    S = np.stack(rows)
    return ScoreTrace(LABELS, EngineConfig(), (np.arange(len(S)) + 1) * 800, S, np.ones(len(S), bool))


def test_calibration_follows_each_words_false_accepts():
    rng = np.random.default_rng(0)
    trace = trace_with_peaks({"yes": list(rng.uniform(0.4, 0.97, 40)), "no": [0.55, 0.6],
                              "up": list(rng.uniform(0.35, 0.8, 12))})
    assert peaks(trace, "no").tolist() == pytest.approx([0.6, 0.55], abs=1e-6)
    hours = 1.0
    cal = fit_thresholds(trace, hours, 0.5)
    th = cal.values
    assert set(th) == {"yes", "no", "up", "stop"}
    assert th["yes"] > 0.97 and th["up"] > 0.8  # above everything seen: the budget is 0.05 per word-hour
    assert th["no"] > 0.6 and th["stop"] >= 0.5 and th["stop"] < th["yes"]  # few peaks: a lower bar, not below them
    assert cal.words["yes"].how == "tail" and cal.words["no"].how.startswith("pooled")
    assert cal.false_accepts == len(trace.detections(thresholds=th)) == 0
    # a higher target allows lower thresholds; counting takes over once the budget holds whole false accepts
    loose = fit_thresholds(trace, hours, 40.0)
    assert all(loose.values[w] <= th[w] for w in th) and loose.words["yes"].how == "count"
    assert loose.false_accepts <= 40
    meta = cal.to_meta()
    assert CheckpointMeta.from_dict({"thresholds": meta}).word_thresholds() == pytest.approx(th, abs=1e-6)
    assert combine({"yes": 0.9, "no": 0.99}, {"yes": 0.95, "no": 0.7}, replace=False) == {"yes": 0.95, "no": 0.99}
    assert combine({"yes": 0.9}, {"yes": 0.5}, replace=True) == {"yes": 0.5}


def test_malformed_thresholds_are_refused():
    for bad in [{"values": {"yes": 2}}, {"values": {"yes": "high"}}, {"values": [0.5]}]:
        with pytest.raises(ValueError, match="calibrated thresholds"):
            CheckpointMeta.from_dict({"thresholds": bad}).word_thresholds()
    assert CheckpointMeta.from_dict({"thresholds": "nonsense"}).thresholds == {}  # not a dict: dropped, like accuracy


# ----------------------------------------------------------------------------- operating points (sensitivity)

RATES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def test_operating_points_are_read_and_malformed_ones_refused():
    good = [{"fa_per_hour": 0.1, "values": {"yes": 0.95, "no": 0.9}}, {"fa_per_hour": 1, "values": {"yes": 0.8}}]
    meta = CheckpointMeta.from_dict({"thresholds": {"values": {"yes": 0.9}, "operating_points": good}})
    assert meta.operating_points() == [(0.1, {"yes": 0.95, "no": 0.9}), (1.0, {"yes": 0.8})]
    assert CheckpointMeta.from_dict({"thresholds": {"values": {"yes": 0.9}}}).operating_points() == []
    assert CheckpointMeta().operating_points() == []
    assert CheckpointMeta(thresholds={"operating_points": []}).operating_points() == []
    point = {"fa_per_hour": 0.5, "values": {"yes": 0.9}}
    for bad, why in [({"fa_per_hour": 0.5}, "a list"), ([0.5], "operating point 0 must be"),
                     ([{**point, "fa_per_hour": 0}], "positive finite"), ([{**point, "fa_per_hour": -1}], "positive"),
                     ([{**point, "fa_per_hour": float("nan")}], "positive"), ([{**point, "fa_per_hour": float("inf")}],
                                                                               "positive"),
                     ([{**point, "fa_per_hour": "1"}], "positive"), ([{**point, "fa_per_hour": True}], "positive"),
                     ([{"values": {"yes": 0.9}}], "fa_per_hour"),
                     ([{**point, "values": {"yes": 1.5}}], r"operating point 0 \(0.5 false accepts/h\): calibrated"),
                     ([{**point, "values": {"yes": 0.0}}], "calibrated thresholds"),
                     ([{**point, "values": {"yes": float("nan")}}], "calibrated thresholds"),
                     ([{**point, "values": [0.9]}], "calibrated thresholds"),
                     ([{**point, "values": {}}], "has no thresholds"),
                     ([point, {**point, "fa_per_hour": 0.2}], "sorted by fa_per_hour, ascending: 0.2 comes after 0.5"),
                     ([point, point], "sorted")]:
        with pytest.raises(ValueError, match=why):
            CheckpointMeta(thresholds={"values": {"yes": 0.9}, "operating_points": bad}).operating_points()
    # the decision settings the thresholds were fitted at: patience is 1 for calibrations older than it
    assert CheckpointMeta(thresholds={"values": {"yes": 0.9}}).calibrated_engine() == {}
    assert CheckpointMeta(thresholds={"engine": {"ema_alpha": 0.7, "hop_s": 0.05}}).calibrated_engine() == \
        {"patience": 1, "ema_alpha": 0.7}
    assert CheckpointMeta(thresholds={"engine": {"patience": 3}}).calibrated_engine() == {"patience": 3}
    for bad in [{"patience": 0}, {"patience": 1.5}, {"patience": True}, {"ema_alpha": 0}, {"ema_alpha": "0.7"}, [1]]:
        with pytest.raises(ValueError, match="calibration's"):
            CheckpointMeta(thresholds={"engine": bad}).calibrated_engine()


def test_operating_points_are_the_fit_at_each_rate_and_never_rise_as_the_rate_does():
    rng = np.random.default_rng(0)
    trace = trace_with_peaks({"yes": list(rng.uniform(0.4, 0.97, 40)), "no": [0.55, 0.6],
                              "up": list(rng.uniform(0.35, 0.8, 12))})
    points = fit_operating_points(trace, 1.0, fitted_on="test")
    assert [p["fa_per_hour"] for p in points] == list(RATES)
    for p in points:  # on this trace no fits cross: each point is fit_thresholds at its rate
        fit = fit_thresholds(trace, 1.0, p["fa_per_hour"], fitted_on="test").values
        assert p["values"] == {w: round(t, 6) for w, t in fit.items()}
    for w in ("yes", "no", "up", "stop"):
        th = [p["values"][w] for p in points]
        assert all(a >= b for a, b in zip(th, th[1:])), (w, th)
    assert points[0]["values"]["yes"] > points[-1]["values"]["yes"]  # the curve does move
    # where the fits cross (two high peaks over a tail of low ones: extrapolated at 2/h, counted at 4/h),
    # the stricter point takes the higher threshold
    crossing = trace_with_peaks({"yes": [0.99, 0.99] + [0.5] * 8})
    raw = [fit_thresholds(crossing, 1.0, t).values["yes"] for t in (2.0, 4.0)]
    assert raw[0] < raw[1]
    fixed = [p["values"]["yes"] for p in fit_operating_points(crossing, 1.0, (4.0, 2.0))]
    assert fixed == [round(raw[1], 6)] * 2
    with pytest.raises(ValueError, match="distinct positive"):
        fit_operating_points(crossing, 1.0, (1.0, 1.0))
    # the metadata: to_meta writes them, CheckpointMeta reads them back
    meta = fit_thresholds(trace, 1.0, 0.5).to_meta(points)
    assert json.loads(json.dumps(meta))["operating_points"] == points
    assert CheckpointMeta.from_dict({"thresholds": meta}).operating_points() == \
        [(p["fa_per_hour"], p["values"]) for p in points]
    assert "operating_points" not in fit_thresholds(trace, 1.0, 0.5).to_meta()
    # a recording's points against the model's: the higher at each rate the model has, none where it has none
    room = [{"fa_per_hour": 0.5, "values": {"yes": 0.7}}, {"fa_per_hour": 1.0, "values": {"yes": 0.6}}]
    assert combine_points([(0.5, {"yes": 0.9})], {"yes": 0.9}, room, replace=False) == \
        [{"fa_per_hour": 0.5, "values": {"yes": 0.9}}]
    assert combine_points([], {"yes": 0.9}, room, replace=False) == []  # calibrated at one rate only
    assert combine_points([], {}, room, replace=False) == room == combine_points([(0.5, {"yes": 0.9})], {}, room, True)


def test_sensitivity_picks_the_nearest_operating_point_on_a_log_scale():
    points = [(r, {"yes": 0.9}) for r in RATES]
    assert nearest_operating_point(points, 0.5) == 2
    assert nearest_operating_point(points, 3.3) == 5  # 5/h: nearer than 2/h in ratio (1.5x vs 1.65x), not in difference
    assert nearest_operating_point(points, 0.3) == 1
    assert nearest_operating_point(points, 1e-4) == 0 and nearest_operating_point(points, 1e4) == 6
    assert nearest_operating_point([(1.0, {}), (4.0, {})], 2.0) == 0  # halfway in ratio: the stricter
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of false accepts"):
            nearest_operating_point(points, bad)
    with pytest.raises(ValueError, match="no operating points"):
        nearest_operating_point([], 1.0)


def calibrated_predictor(points: bool = True, engine: dict | None = None):
    """A predictor whose model carries a calibration: a default point for 0.5/h and, optionally, a curve."""
    pts = tuple((r, {"yes": round(0.99 - 0.04 * i, 2), "no": round(0.95 - 0.04 * i, 2), "left": 0.5})
                for i, r in enumerate(RATES)) if points else ()
    return dataclasses.replace(
        from_function(lambda w: np.full((len(w), len(LABELS)), 1 / len(LABELS), np.float32), LABELS, "calibrated"),
        thresholds={"yes": 0.91, "no": 0.87}, thresholds_note="per-word thresholds for 0.5 false accepts/h",
        thresholds_fa_per_hour=0.5, operating_points=pts, calibrated_engine=engine or {})


def test_a_session_takes_the_operating_point_and_the_calibrations_patience():
    pred = calibrated_predictor(engine={"patience": 3, "ema_alpha": 0.5})
    cfg, _, notes = live_config(EngineConfig(), pred)  # the default point, at the settings it was fitted at
    assert dict(cfg.word_thresholds) == {"yes": 0.91, "no": 0.87} and cfg.patience == 3 and cfg.ema_alpha == 0.5
    assert "0.5 false accepts/h" in notes[0] and "as calibrated: ema alpha 0.5, patience 3" in notes
    cfg, _, notes = live_config(EngineConfig(fa_per_hour=3.3), pred)  # nearest: 5/h, the 6th point
    assert dict(cfg.word_thresholds) == {"yes": 0.79, "no": 0.75} and cfg.patience == 3  # "left": not its label
    assert notes[0].startswith("thresholds: the operating point for 5 false accepts/h (asked 3.3)")
    cfg, _, notes = live_config(EngineConfig(threshold=0.7, use_model_thresholds=False), pred)
    assert cfg.word_thresholds == () and cfg.patience == 1 and cfg.ema_alpha == 0.7  # the user's rule, not the fit's
    with pytest.raises(ValueError, match="sensitivity 2 false accepts/h: calibrated has no calibrated operating points"):
        live_config(EngineConfig(fa_per_hour=2), calibrated_predictor(points=False))
    with pytest.raises(ValueError, match="fa_per_hour"):
        EngineConfig(fa_per_hour=1.0, use_model_thresholds=False)
    with pytest.raises(ValueError, match="fa_per_hour"):
        EngineConfig(fa_per_hour=0.0)


def test_set_word_thresholds_replaces_every_threshold_at_once():
    engine = DetectionEngine(None, LABELS, EngineConfig(threshold=0.6, word_thresholds={"yes": 0.9}))
    assert engine.thresholds.tolist() == [0.6, 0.9, 0.6, 0.6, 0.6]
    before = engine._proc.trigger.thresholds
    engine.set_word_thresholds({"no": 0.7, "stop": 0.8})
    assert engine.thresholds.tolist() == [0.6, 0.6, 0.7, 0.6, 0.8]  # "yes" is back at the configured threshold
    assert engine._proc.trigger.thresholds is not before  # a new vector, stored once: never half-written
    for bad, why in [({"left": 0.5}, "not among the model's labels"), ({"no": 1.5}, r"word thresholds no=1.5"),
                     ({"no": 0.0}, "word thresholds"), ({"no": float("nan")}, "word thresholds")]:
        with pytest.raises(ValueError, match=why):
            engine.set_word_thresholds(bad)
        assert engine.thresholds.tolist() == [0.6, 0.6, 0.7, 0.6, 0.8]  # unchanged by a refused mapping
    # it decides with them: a "no" at 0.75 fires at 0.7, not at 0.8
    s = np.array([0.1, 0.05, 0.75, 0.05, 0.05], np.float32)
    trig = engine._proc.trigger
    assert trig.update(s, 800, 0).label == "no"
    engine.set_word_thresholds({"no": 0.8})
    assert trig.update(s, 800 * 30, 29) is None  # past the cooldown: below its new threshold
    engine.set_word_thresholds({"no": 0.7})
    assert trig.update(s, 800 * 31, 30).label == "no"  # re-armed by the hop below 0.8


def test_live_cli_sensitivity(tmp_path, capsys):
    from cli import live

    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    args = live.build_parser().parse_args(["--sensitivity", "2"])
    cfg = live.engine_config(args)
    assert cfg.fa_per_hour == 2.0 and cfg.use_model_thresholds
    session = LiveSession(calibrated_predictor(), live.make_source(args, cfg, False), cfg)
    assert session.engine.thresholds.tolist() == [0.6, 0.83, 0.79, 0.6, 0.6]  # the 2/h point
    for argv, why in [(["--sensitivity", "2", "--threshold", "0.7"], "give one of them"),
                      (["--sensitivity", "0"], "--sensitivity must be a positive number")]:
        assert live.main(["--headless", "--input", str(wav), *argv],
                         predictor_factory=lambda _a: calibrated_predictor()) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
    assert live.main(["--headless", "--input", str(wav), "--sensitivity", "1"],
                     predictor_factory=lambda _a: calibrated_predictor(points=False)) == 2
    err = capsys.readouterr().err
    assert "has no calibrated operating points" in err and err.count("\n") == 1, err
    assert live.main(["--headless", "--input", str(wav), "--sensitivity", "1"],
                     predictor_factory=lambda _a: calibrated_predictor()) == 0


@pytest.fixture
def one_thread():
    """One torch thread, as the live app runs: small convolutions on a shared machine spin with more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_calibrate_command_writes_a_copy_that_live_uses(tmp_path, capsys, one_thread):
    """A recording -> `python -m bench calibrate` -> a calibrated checkpoint -> live.py's per-word thresholds
    (from the checkpoint on torch-cpu, from the ONNX metadata the export copied on ort-cpu); --threshold overrides."""
    import torch

    from cli import live
    import zoo
    from bench.__main__ import main as bench_main
    from realtime.predictor import load_predictor
    from realtime.session import LiveSession, live_config
    from realtime.sources import ReplaySource

    torch.manual_seed(0)
    ckpt = zoo.save_checkpoint(zoo.create_model("dscnn").eval(), tmp_path / "model.safetensors", {"run": "x"})
    rng = np.random.default_rng(0)
    room = (rng.standard_normal(20 * SAMPLE_RATE) * 0.02).astype(np.float32)  # 20 s of a noisy room
    sf.write(tmp_path / "room.wav", room, SAMPLE_RATE)
    out = tmp_path / "calibrated.safetensors"
    assert bench_main(["calibrate", "--model", str(ckpt), "--input", str(tmp_path / "room.wav"), "--out", str(out),
                       "--target", "0.5", "--backend", "torch-cpu"]) == 0
    printed = capsys.readouterr().out
    assert "calibrated model:" in printed and "false accepts with these thresholds" in printed
    meta = CheckpointMeta.from_dict(zoo.read_header(out)[1])
    values = meta.word_thresholds()
    assert len(values) == 35 and all(0.5 <= t <= 0.9999 for t in values.values())
    assert meta.thresholds["target_fa_per_hour"] == 0.5 and "room.wav" in meta.thresholds["fitted_on"]
    points = meta.operating_points()  # the curve the sensitivity moves along, the target's point among them
    assert [r for r, _ in points] == list(RATES) and dict(points)[0.5] == pytest.approx(values, abs=1e-6)
    assert meta.calibrated_engine() == {"patience": 1, "ema_alpha": 0.7} and "operating points" in printed
    torch.testing.assert_close(zoo.load_model(out)[0].state_dict(), zoo.load_model(ckpt)[0].state_dict())
    for backend in ("torch-cpu", "ort-cpu"):
        pred = load_predictor(str(out), backend, 1, streaming=False)
        assert pred.thresholds == pytest.approx(values, abs=1e-6), backend
        assert pred.operating_points == tuple(points) and pred.calibrated_engine["patience"] == 1, backend
        cfg, _, notes = live_config(EngineConfig(), pred)
        assert dict(cfg.word_thresholds) == pytest.approx(values, abs=1e-6) and "0.5 false accepts/h" in notes[0]
        session = LiveSession(pred, ReplaySource(wave=room[:SAMPLE_RATE], realtime=False, name="t"), EngineConfig())
        assert session.engine.thresholds[list(pred.labels).index("yes")] == pytest.approx(values["yes"], abs=1e-6)
    # live.py: the calibrated thresholds by default, one threshold for every word with --threshold
    args = live.build_parser().parse_args(["--weights", str(out)])
    assert live.engine_config(args).use_model_thresholds
    args = live.build_parser().parse_args(["--weights", str(out), "--threshold", "0.7"])
    cfg, _, notes = live_config(live.engine_config(args), pred)
    assert cfg.word_thresholds == () and cfg.threshold == 0.7 and "--threshold given" in notes[0]
    # a recording can only raise thresholds: recalibrating on it again keeps them
    again = tmp_path / "again.safetensors"
    assert bench_main(["calibrate", "--model", str(out), "--input", str(tmp_path / "room.wav"), "--out",
                       str(again), "--backend", "torch-cpu"]) == 0
    again_meta = CheckpointMeta.from_dict(zoo.read_header(again)[1])
    assert all(t >= values[w] - 1e-9 for w, t in again_meta.word_thresholds().items())
    assert [r for r, _ in again_meta.operating_points()] == list(RATES)  # combined point by point
    assert all(t >= dict(points)[r][w] - 1e-9 for r, v in again_meta.operating_points() for w, t in v.items())
    assert json.loads(json.dumps(meta.thresholds))  # plain JSON all the way


def test_a_bad_recording_is_a_message(tmp_path, capsys):
    from bench.__main__ import main as bench_main

    (tmp_path / "room.wav").write_bytes(b"not audio")
    assert bench_main(["calibrate", "--model", "dscnn", "--input", str(tmp_path / "room.wav")]) == 2
    assert "room.wav" in capsys.readouterr().err
