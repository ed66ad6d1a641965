"""Notebook 09's exercises: the organisers' overlap, their walk over one sequence's predictions and the
micro-aggregated F1, graded against `mgtutor.eval.miga_f1` (docs/reference.md, section 1).

A gesture or a prediction is ``(label, start_frame, end_frame)``; predictions and truth map a sequence id to
a list of them.
"""

from __future__ import annotations

from mgtutor.eval.miga_f1 import credited_predictions, miga_f1, miga_overlap
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# the notebook's hand-made case: every rule shows
EXAMPLE_TRUTH = {"A": [(3, 10, 40), (3, 30, 60), (5, 100, 130), (7, 200, 240)], "B": [(1, 0, 20)]}
EXAMPLE_PREDICTIONS = {"A": [(3, 12, 50), (5, 105, 125), (7, 200, 212), (9, 300, 320)], "B": []}

# -- the organisers' overlap ----------------------------------------------------------------------


def _overlap(p, g):
    return miga_overlap(p, g)


def _parts(p, g):
    (_, ps, pe), (_, gs, ge) = p, g
    return ps, pe, gs, ge, min(pe, ge) - max(ps, gs)


def _over_truth(p, g):
    ps, pe, gs, ge, inter = _parts(p, g)
    return inter / (ge - gs) if ge > gs else 0.0


def _inclusive(p, g):
    ps, pe, gs, ge, inter = _parts(p, g)
    return (inter + 1) / (max(pe, ge) - min(ps, gs) + 1)


def _clamped(p, g):
    ps, pe, gs, ge, inter = _parts(p, g)
    span = max(pe, ge) - min(ps, gs)
    return max(inter, 0) / span if span > 0 else 0.0


def _overlap_cases() -> list[Case]:
    return [
        Case("a long prediction over a gesture: p = (3, 12, 50), g = (3, 10, 40)", dict(p=(3, 12, 50), g=(3, 10, 40))),
        Case("a prediction inside its gesture: p = (5, 105, 125), g = (5, 100, 130)", dict(p=(5, 105, 125), g=(5, 100, 130))),
        Case("exactly 0.3: p = (7, 200, 212), g = (7, 200, 240)", dict(p=(7, 200, 212), g=(7, 200, 240))),
        Case("disjoint: p = (2, 0, 10), g = (2, 20, 30)", dict(p=(2, 0, 10), g=(2, 20, 30))),
        Case("the same single frame: p = g = (4, 50, 50)", dict(p=(4, 50, 50), g=(4, 50, 50))),
    ]


OVERLAP = register(Exercise(
    name="organisers_overlap",
    minutes=4,
    notebook="09",
    reference=_overlap,
    reference_name="mgtutor.eval.miga_overlap",
    outputs=("alpha",),
    cases=_overlap_cases,
    mistakes=(
        Mistake(_over_truth,
                "your overlap uses the intersection over the ground truth's length; the organisers divide by the "
                "span of both, max(pe, ge) - min(ps, gs), so a long prediction that covers a short gesture does "
                "not score 1."),
        Mistake(_inclusive,
                "you count frames inclusively (+ 1 on both); the organisers use the frame numbers as given, a "
                "gesture [s, e] being e - s long: (min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs))."),
        Mistake(_clamped,
                "you clamp the intersection at 0, as a tIoU does; the organisers' formula does not: disjoint "
                "segments get a negative overlap, min(pe, ge) - max(ps, gs) < 0 over the span of both (it fails "
                "> 0.3 either way, but the check compares the number itself)."),
    ),
))

# -- the walk over one sequence ------------------------------------------------------------------------


def _walk(predictions, gestures, alpha=0.3, one_to_one=False):
    return credited_predictions(predictions, gestures, alpha, one_to_one)


def _walk_by(passes=lambda p, g, alpha: p[0] == g[0] and miga_overlap(p, g) > alpha, consume=None, best=False):
    """The walk with one rule changed; ``consume(one_to_one)`` says whether a credited prediction is used up."""

    def walk(predictions, gestures, alpha, one_to_one):
        used, credited = set(), []
        for g in gestures:
            found = [j for j, p in enumerate(predictions) if j not in used and passes(p, g, alpha)]
            if best and found:
                found.sort(key=lambda j: -miga_overlap(predictions[j], g))
            hit = found[0] if found else None
            credited.append(hit)
            if hit is not None and (consume or (lambda strict: strict))(one_to_one):
                used.add(hit)
        return credited

    return walk


def _walk_cases() -> list[Case]:
    a_truth, a_pred = EXAMPLE_TRUTH["A"], EXAMPLE_PREDICTIONS["A"]
    second_better = [(2, 0, 40), (2, 8, 32)]
    return [
        Case("the notebook's sequence A, organisers' rule", dict(predictions=a_pred, gestures=a_truth, alpha=0.3, one_to_one=False)),
        Case("sequence A, one-to-one", dict(predictions=a_pred, gestures=a_truth, alpha=0.3, one_to_one=True)),
        Case("two gestures, the better-overlapping prediction second, one-to-one",
             dict(predictions=second_better, gestures=[(2, 10, 30), (2, 0, 36)], alpha=0.3, one_to_one=True)),
        Case("the same, alpha = 0.5, organisers' rule",
             dict(predictions=second_better, gestures=[(2, 10, 30), (2, 0, 36)], alpha=0.5, one_to_one=False)),
        Case("a prediction of another class first", dict(predictions=[(4, 10, 40), (3, 12, 50)], gestures=[(3, 10, 40)],
                                                          alpha=0.3, one_to_one=False)),
        Case("no predictions", dict(predictions=[], gestures=a_truth, alpha=0.3, one_to_one=False)),
        Case("no gestures", dict(predictions=a_pred, gestures=[], alpha=0.3, one_to_one=False)),
    ]


WALK = register(Exercise(
    name="walk",
    minutes=7,
    notebook="09",
    reference=_walk,
    reference_name="mgtutor.eval.credited_predictions",
    outputs=("credited",),
    cases=_walk_cases,
    mistakes=(
        Mistake(_walk_by(consume=lambda strict: True),
                "you consume a credited prediction by the organisers' rule too. Their code calls numpy.delete but "
                "drops the copy it returns, so a prediction can be credited to several gestures; only one_to_one=True "
                "uses a credited prediction up."),
        Mistake(_walk_by(consume=lambda strict: False),
                "with one_to_one=True a credited prediction is used up: later gestures skip it (keep a set of the "
                "indices already credited)."),
        Mistake(_walk_by(passes=lambda p, g, alpha: p[0] == g[0] and miga_overlap(p, g) >= alpha),
                "the rule is strictly greater: an overlap of exactly 0.3 is not enough (overlap > alpha), so the "
                "class-7 gesture of sequence A is missed."),
        Mistake(_walk_by(passes=lambda p, g, alpha: miga_overlap(p, g) > alpha),
                "a prediction counts only for a gesture of its own class: p[0] == g[0] as well as the overlap."),
        Mistake(_walk_by(best=True),
                "the walk takes the FIRST prediction in order whose overlap passes, not the one that overlaps most; "
                "with one_to_one that choice decides what later gestures can still take."),
    ),
))

# -- the micro-aggregated F1 ----------------------------------------------------------------------


def _f1(predictions, truth, alpha=0.3, one_to_one=False):
    result = miga_f1(predictions, truth, alpha, one_to_one)
    return result.correct, result.precision, result.recall, result.f1


def _macro(predictions, truth, alpha, one_to_one):
    figures = [_f1({s: predictions.get(s, [])}, {s: gestures}, alpha, one_to_one) for s, gestures in truth.items()]
    correct = sum(f[0] for f in figures)
    return (correct, *(sum(f[i] for f in figures) / len(figures) for i in (1, 2, 3)))


def _swapped(predictions, truth, alpha, one_to_one):
    correct, precision, recall, f1 = _f1(predictions, truth, alpha, one_to_one)
    return correct, recall, precision, f1


def _f1_cases() -> list[Case]:
    return [
        Case("the notebook's example (sequences A and B), organisers' rule",
             dict(predictions=EXAMPLE_PREDICTIONS, truth=EXAMPLE_TRUTH, alpha=0.3, one_to_one=False)),
        Case("the example, one-to-one", dict(predictions=EXAMPLE_PREDICTIONS, truth=EXAMPLE_TRUTH, alpha=0.3, one_to_one=True)),
        Case("the example, alpha = 0.5", dict(predictions=EXAMPLE_PREDICTIONS, truth=EXAMPLE_TRUTH, alpha=0.5, one_to_one=False)),
        Case("sequence C in the truth, absent from the predictions",
             dict(predictions={"A": EXAMPLE_PREDICTIONS["A"]}, truth={**EXAMPLE_TRUTH, "C": [(2, 5, 9)]}, alpha=0.3, one_to_one=False)),
        Case("no prediction anywhere", dict(predictions={"A": [], "B": []}, truth=EXAMPLE_TRUTH, alpha=0.3, one_to_one=False)),
    ]


MICRO_F1 = register(Exercise(
    name="micro_f1",
    minutes=5,
    notebook="09",
    reference=_f1,
    reference_name="mgtutor.eval.miga_f1",
    outputs=("correct", "precision", "recall", "f1"),
    cases=_f1_cases,
    mistakes=(
        Mistake(_macro,
                "you average each sequence's own precision, recall and F1 (macro); the challenge sums the counts "
                "over all sequences first and divides once (micro): P = sum correct / sum #predictions, "
                "R = sum correct / sum #gestures."),
        Mistake(_swapped,
                "your precision and recall are swapped: precision divides the correct count by the number of "
                "predictions (how many of them were right), recall by the number of gestures (how many were found)."),
        Mistake(lambda predictions, truth, alpha, one_to_one: _f1(predictions, truth, alpha, False),
                "pass one_to_one on to the count: with one_to_one=True a credited prediction is used up, and the "
                "example's second class-3 gesture is then missed."),
        Mistake(lambda predictions, truth, alpha, one_to_one: _f1(predictions, truth, 0.3, one_to_one),
                "pass alpha on to the count: your figures are those of alpha = 0.3 whatever alpha is."),
    ),
))
