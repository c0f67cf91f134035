"""Known-answer tests for bench.stats: every published number flows through these functions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import (
    MatchResult,
    OperatingPoint,
    WordEvent,
    fa_per_hour,
    match_detections,
    miss_fa_curve,
    mix_at_snr,
    pareto_front,
    percentiles,
    snr_db,
    summarize_latency,
    threshold_for_fa_rate,
)
from kws.metrics import classification_metrics, confusion_matrix, label_map, score, scoring_space, top1_agreement


def test_percentiles_linear_interpolation_on_1_to_100():
    p = percentiles(np.arange(1, 101))
    assert p == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})


def test_percentiles_order_independent_and_single_value():
    rng = np.random.default_rng(0)
    x = rng.permutation(np.arange(1, 101))
    assert percentiles(x)["p99"] == pytest.approx(99.01)
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}


def test_percentiles_reject_empty_and_nan():
    with pytest.raises(ValueError, match="empty"):
        percentiles([])
    with pytest.raises(ValueError, match="NaN"):
        percentiles([1.0, float("nan")])


def test_summarize_latency_converts_seconds_to_ms():
    s = summarize_latency([0.001, 0.002, 0.003, 0.004])
    assert s.n == 4
    assert s.mean_ms == pytest.approx(2.5)
    assert s.min_ms == pytest.approx(1.0) and s.max_ms == pytest.approx(4.0)
    assert s.p50_ms == pytest.approx(2.5)
    assert s.std_ms == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_confusion_and_macro_metrics_known_answer():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = classification_metrics(y_true, y_pred, 3)
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.per_class_precision == pytest.approx((0.5, 2 / 3, 1.0))
    assert m.per_class_recall == pytest.approx((0.5, 1.0, 0.5))
    assert m.per_class_f1 == pytest.approx((0.5, 0.8, 2 / 3))
    assert m.macro_precision == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m.macro_recall == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m.support == (2, 2, 2)
    assert m.n_unmapped == 0


def test_macro_average_counts_predicted_but_absent_class_and_skips_unused_class():
    # class 2 never occurs and is never predicted: left out of the macro average;
    # class 1 is predicted but never true: precision 0, recall 0 (zero_division=0).
    m = classification_metrics([0, 0], [0, 1], 3)
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)
    assert m.macro_precision == pytest.approx(0.5)
    assert m.macro_recall == pytest.approx(0.25)


def test_unmapped_predictions_are_wrong_but_no_class_false_positive():
    m = classification_metrics([0, 1, 1], [0, -1, 1], 2)
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.n_unmapped == 1
    assert m.per_class_recall == pytest.approx((1.0, 0.5))
    assert m.per_class_precision == pytest.approx((1.0, 1.0))
    assert sum(map(sum, m.confusion)) == 2


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics([0, 1], [0], 2)


def test_top1_agreement():
    assert top1_agreement([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        top1_agreement([1], [1, 2])


def test_label_map_35_words_onto_12_class_task():
    from kws.labels import GSC12_LABELS, SILENCE, UNKNOWN

    m = label_map(("yes", "cat", SILENCE, "no"), GSC12_LABELS)
    assert m.tolist() == [GSC12_LABELS.index("yes"), GSC12_LABELS.index(UNKNOWN),
                          GSC12_LABELS.index(SILENCE), GSC12_LABELS.index("no")]
    assert label_map(("zero", "one"), ("one", "two")).tolist() == [-1, 0]


def test_pareto_front_minimises_latency_maximises_accuracy():
    lat = [1.0, 2.0, 3.0, 2.0, 4.0, float("nan"), 5.0]
    acc = [0.5, 0.8, 0.7, 0.6, 0.9, 1.0, 0.9]
    # (3, .7) and (2, .6) are dominated by (2, .8); (5, .9) by (4, .9); NaN never on the front
    assert pareto_front(lat, acc).tolist() == [True, True, False, False, True, False, False]


def test_pareto_front_keeps_exact_duplicates():
    assert pareto_front([1.0, 1.0], [0.5, 0.5]).tolist() == [True, True]


def test_match_detections_hit_wrong_miss_extra():
    events = [WordEvent("yes", 1.0, 2.0), WordEvent("no", 4.0, 5.0), WordEvent("up", 7.0, 8.0)]
    dets = [("yes", 1.5), ("yes", 2.5),  # hit + a duplicate inside the same window
            ("go", 5.5),  # wrong word for "no"
            ("on", 10.0)]  # outside every window: a false accept
    r = match_detections(dets, events, tol_before_s=0.0, tol_after_s=1.0)
    assert (r.hits, r.wrong_words, r.misses, r.extra) == (1, 1, 1, 2)
    assert r.outcomes == ("hit", "wrong", "miss")
    assert r.hit_rate == pytest.approx(1 / 3)
    assert r.wrong_word_rate == pytest.approx(1 / 3)
    assert r.miss_rate == pytest.approx(2 / 3)


def test_match_detections_window_edges_and_unsorted_events():
    events = [WordEvent("b", 5.0, 6.0), WordEvent("a", 1.0, 2.0)]
    # 3.0 is exactly at a's window end (2 + 1); 0.9 is before any window; 4.95 in b's pre-tolerance
    r = match_detections([("a", 3.0), ("x", 0.9), ("b", 4.95)], events, tol_before_s=0.1, tol_after_s=1.0)
    assert r.outcomes == ("hit", "hit")
    assert r.extra == 1


def test_fa_per_hour_and_curve():
    assert fa_per_hour(3, 600.0) == pytest.approx(18.0)
    assert fa_per_hour(0, 600.0) == 0.0
    with pytest.raises(ValueError):
        fa_per_hour(1, 0.0)
    mr = [MatchResult(10, h, 0, 10 - h, 0, ()) for h in (9, 7, 4)]
    pts = miss_fa_curve([0.5, 0.7, 0.9], mr, [6, 1, 0], free_duration_s=3600.0)
    assert [p.miss_rate for p in pts] == pytest.approx([0.1, 0.3, 0.6])
    assert [p.fa_per_hour for p in pts] == pytest.approx([6.0, 1.0, 0.0])
    best = threshold_for_fa_rate(pts, 1.0)
    assert best is not None and best.threshold == pytest.approx(0.7)


def test_threshold_for_fa_rate_none_and_ties():
    pts = [OperatingPoint(0.5, 0.1, 5.0), OperatingPoint(0.6, 0.2, 2.0)]
    assert threshold_for_fa_rate(pts, 1.0) is None
    tie = [OperatingPoint(0.9, 0.2, 0.0), OperatingPoint(0.8, 0.2, 0.0), OperatingPoint(0.95, 0.5, 0.0)]
    assert threshold_for_fa_rate(tie, 1.0).threshold == pytest.approx(0.8)


@pytest.mark.parametrize("target", [20.0, 10.0, 5.0, 0.0, -5.0])
def test_mix_at_snr_hits_the_target(target):
    rng = np.random.default_rng(1)
    s = np.sin(np.linspace(0, 200 * math.pi, 16000)) * 0.3
    n = rng.standard_normal(16000) * 0.7
    mixed = mix_at_snr(s, n, target)
    assert snr_db(s, mixed - s) == pytest.approx(target, abs=1e-3)
    assert mixed.dtype == np.float32


def test_mix_at_snr_rejects_silence():
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.zeros(10), np.ones(10), 10.0)


def test_scoring_space_12_class_model_on_word_level_data():
    from kws.labels import GSC12_LABELS

    data = ("cat", "no", "yes", "_silence_")
    sp = scoring_space(GSC12_LABELS, data)
    assert sp.name == "12-class task" and sp.labels == GSC12_LABELS
    # truth: cat, yes, silence; the model says unknown, yes, no
    m = score(sp, [0, 2, 3], [GSC12_LABELS.index("_unknown_"), GSC12_LABELS.index("yes"),
                              GSC12_LABELS.index("no")])
    assert m.accuracy == pytest.approx(2 / 3)


def test_scoring_space_word_model_stays_in_data_labels():
    data = ("no", "yes", "_silence_")
    sp = scoring_space(("yes", "no", "cat", "_silence_"), data)
    assert sp.labels == data and sp.pred_map.tolist() == [1, 0, -1, 2]
    m = score(sp, [0, 1, 2], [1, 2, 3])  # no->no (index 1 of the model), yes->cat (wrong), silence
    assert m.accuracy == pytest.approx(2 / 3) and m.n_unmapped == 1


def test_wilson_interval_known_values():
    from bench.stats import wilson_interval

    lo, hi = wilson_interval(50, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3  # textbook value for 50/100
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson_interval(0, 0)))


def test_t_interval_of_fold_means():
    from bench.stats import t_interval

    m, lo, hi = t_interval([0.9, 0.92, 0.94, 0.96, 0.98])
    assert m == pytest.approx(0.94)
    # sd 0.0316, t(0.975, 4) = 2.776: half-width 0.0393
    assert hi - m == pytest.approx(2.776 * 0.031623 / np.sqrt(5), rel=1e-3) and m - lo == pytest.approx(hi - m)
    with pytest.raises(ValueError):
        t_interval([])


def test_cluster_bootstrap_is_wider_than_clips_when_speakers_differ():
    from bench.stats import cluster_bootstrap_interval, wilson_interval

    # 20 speakers x 20 clips: half the speakers always right, half always wrong
    correct = np.repeat([True, False] * 10, 20)
    speakers = np.repeat([f"s{i}" for i in range(20)], 20)
    lo, hi = cluster_bootstrap_interval(correct, speakers, reps=4000, seed=1)
    wlo, whi = wilson_interval(200, 400)
    assert lo < 0.5 < hi and (hi - lo) > 2 * (whi - wlo)  # 20 independent units, not 400
    # every clip its own cluster: close to the binomial interval
    lo2, hi2 = cluster_bootstrap_interval(correct, np.arange(400).astype(str), reps=4000, seed=1)
    assert abs((hi2 - lo2) - (whi - wlo)) < 0.02
