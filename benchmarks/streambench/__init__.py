"""Streaming benchmark: raw Kafka consume, a Faust pass-through, the full worker.

    python -m benchmarks.streambench                  # ~5-7 min, writes the results
    python -m benchmarks.streambench --quick          # ~2-3 min smoke run, same keys
    python -m benchmarks.streambench --events 20000 --latency-s 20

Everything runs in one go on this machine, against a real local Apache Kafka
(stream.tools.localkafka) started in a temp dir and stopped at the end, so the figures are
comparable with each other; absolute numbers depend on what else the machine runs,
which is why the result also carries them as ratios to the baselines measured here.

1. hot path, no Kafka (first, before the broker takes CPU; hot_path.py, profile.py): the
   cost per event of `stream.worker.recommend.process_batch` (the state loaded from its
   `user_state` row, StreamModel step, faiss top-20 over the whole MovieLens catalogue)
   for 200 users whose session already has 1, 10 or 50 events; the naive alternative
   (re-encoding the whole session, HierTCN.encode) as a contrast; and a cProfile of
   200-event batches -> results/stream_profile.txt;
2. N MovieLens clicks pre-loaded into a 4-partition topic (stream.tools.replay);
3. raw confluent-kafka consume of those N messages (ceilings.py);
4. the pass-through Faust app (passthrough_app.py, a worker subprocess; ceilings.py):
   first to N-th output message, by the outputs' Kafka timestamps;
5. the real worker (`python -m stream.cli worker`, real RocksDB tables, the full-size
   HierTCN; workers.py): first to N-th recommendation; then a fresh worker fed at 50% of
   that rate for --latency-s seconds: latency = the recommendation's Kafka timestamp
   minus its click's produce timestamp (matched by event_id), p50/p99. The same with 2
   workers in one consumer group (started on an empty topic, both ready and the group
   stable before the N events are produced, so no rebalance falls inside the
   measurement).

Ratios, targets and notes: report.py; the run's world (broker, topics, processes through
stream/tools/harness.py): lab.py; producer and output reader: load.py; the command line:
__main__.py. Results: benchmarks/results/stream.json.

The model is the full-size HierTCN (default ModelConfig) over the MovieLens training
catalogue with random weights: speed does not depend on the weights.
"""
