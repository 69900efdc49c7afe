"""Kafka/Faust serving side of HierTCN."""
