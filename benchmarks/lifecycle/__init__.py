"""Model lifecycle in the stream (issue 15). This part: does a user's state survive a
rollout to a new model version? `python -m benchmarks.lifecycle` replays the MovieLens
test users through the worker's pure step with a rollout between the two halves of
each user's clicks, and scores three arms (replay.py): no rollout, rollout with reset,
rollout with rebuild from the history; plus the rebuild's cost per user and what the
history adds to a row (sizes.py). `python -m benchmarks.lifecycle.hot_cost`: the hot
path's per-event cost, quickest form, to compare before and after a change to rows.
"""
