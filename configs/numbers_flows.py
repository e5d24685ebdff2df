"""Flows for configs/tabular.yml, over the columns of configs/data/numbers.csv.

A flow module is plain Python: each function ``f(flow, x, out)`` becomes a flow, registered in the order they
appear here (nested flows first); the last one is the full flow the runner trains.
"""


def numerical_flow(flow, x, out):
    out += flow.is_even(x.features)
    out += flow.predict_positive(x.features) | out.is_even
    out += flow.multiple_three(x.features) | out.predict_positive
    return out


def is_interesting(flow, x, out):
    out += flow.is_interesting(x.features)
    out += flow.numerical_flow(x) | out.is_interesting
    return out
