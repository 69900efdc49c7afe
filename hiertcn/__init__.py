"""HierTCN: hierarchical temporal convolutional networks for dynamic recommendation.

You et al., "Hierarchical Temporal Convolutional Networks for Dynamic Recommender
Systems", WWW 2019. A GRU over sessions carries long-term interest; a causal dilated TCN
inside the current session, conditioned on the GRU state, predicts the next item's
embedding.
"""

__version__ = "0.1.0"
