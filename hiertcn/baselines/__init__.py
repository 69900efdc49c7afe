"""Non-neural baselines that HierTCN must beat: most-popular and session item-kNN.

Both follow the `hiertcn.contract.Recommender` contract: `predict_user(sessions, u)`
returns (E_u, n_items) float32 scores, row i using only the user's events before i.
"""
