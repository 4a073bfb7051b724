"""The fixed text of ``results/bench/peer.md``: what differs from plain Optuna TPE, and
the published figures (kept apart from the code that computes the page's numbers)."""

COMMENTARY: list[str] = []
