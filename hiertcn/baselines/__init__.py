"""Baselines HierTCN must beat, beside the model and on the same contracts.

Non-neural (`hiertcn.contract.Recommender`: `fit(train)`, then `predict_user(sessions,
u)` returns (E_u, n_items) float32 scores, row i using only the user's events before
i): most-popular (popular), item-to-item kNN (item_knn), session-kNN SKNN and V-SKNN
(session_knn). Neural (`hiertcn.contract.NeuralModel`, built by `hiertcn.models`):
GRU4Rec, HRNN, the flat TCN and SASRec.
"""
