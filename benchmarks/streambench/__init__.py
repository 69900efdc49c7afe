"""Streaming benchmark: the worker on two workloads, against ceilings measured in the
same run (raw Kafka consume, a Faust consume-only agent, a Faust pass-through).

    python -m benchmarks.streambench                  # ~5-7 min, writes the results
    python -m benchmarks.streambench --quick          # ~2-3 min smoke run, same keys
    python -m benchmarks.streambench --events 20000 --users 10000 --latency-s 20
    python -m benchmarks.streambench.loadgen --users 10000 --rate 500 --duration 60

Everything runs in one go on this machine, against a real local Apache Kafka
(stream.tools.localkafka) started in a temp dir and stopped at the end, so the figures are
comparable with each other; absolute numbers depend on what else the machine runs
(machine.loadavg_at_start / at_end), which is why the result carries them as ratios.

1. hot path, no Kafka (first, before the broker takes CPU; hot_path.py, profile.py): the
   cost per event of `stream.worker.recommend.process_batch` for 200 users whose session
   already has 1, 10 or 50 events; the naive re-encode as a contrast; a cProfile ->
   stream_profile.txt beside the results;
2. two workloads (workloads.py), each pre-loaded into its own 4-partition topic:
   - concurrent: --users users replaying their own MovieLens sequences at once,
     interleaved (schedule.py: the pure schedule; loadgen.py: the sender and its CLI);
   - bursty: the MovieLens log in event-time order (stream.tools.replay);
   on each topic: raw confluent-kafka consume and the Faust consume-only agent
   (ceilings.py, passthrough_app.py; the pass-through on the concurrent topic), the real
   worker's maximum rate (`python -m stream.cli worker` through stream/tools/harness.py,
   drained as fast as it goes, workers.py), then a fresh worker fed the workload at half
   that rate: latency = the recommendation's broker timestamp (LogAppendTime) minus the
   click's producer timestamp (its send time), every click counted;
3. two workers in one consumer group on the concurrent clicks.

Ratios, targets (met / missed) and notes: report.py; the run's world (broker, topics,
processes): lab.py; producer and output reader: load.py; the command line: __main__.py.
Results: benchmarks/results/stream.json.

The model is the full-size HierTCN (default ModelConfig) over the MovieLens training
catalogue with random weights: speed does not depend on the weights.
"""
