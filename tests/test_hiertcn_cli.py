"""`hiertcn train | evaluate | export` as a user runs them, on a tiny generated log:
model sizes are options with one-line errors naming the option; evaluate takes a run
folder of any model; export is HierTCN only and writes the session policy."""

import json

import numpy as np
import pytest
import torch

from hiertcn.cli import main


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    """30 users, 3 sessions of 2-4 clicks each over 10 items, sessions an hour apart."""
    rng = np.random.default_rng(0)
    rows = ["user,item,ts"]
    for u in range(30):
        for s in range(3):
            for k in range(rng.integers(2, 5)):
                rows.append(f"u{u},m{rng.integers(10)},{s * 3600 + k * 60}")
    path = tmp_path_factory.mktemp("data") / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def data_args(log_file, tmp_path):
    return ["--data", log_file, "--format", "generic", "--cache-dir", tmp_path / "cache",
            "--min-item-count", 1, "--keep-repeats"]


@pytest.mark.parametrize("argv, message", [
    (["--kernel-size", "0"], "error: --kernel-size: expected an integer >= 2, got 0"),
    (["--levels", "two"], "error: --levels: expected an integer >= 1, got two"),
    (["--dropout", "1"], "error: --dropout: expected a number >= 0 and < 1, got 1.0"),
    (["--model", "gru4rec", "--gru-hidden", "64"], "error: --gru-hidden: sizes HierTCN, "
                                                   "not gru4rec"),
])
def test_bad_model_size_is_one_line_naming_the_option(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, "train", "--out", tmp_path / "run", *argv)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_help_lists_model_sizes_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option, default in (("--kernel-size", 5), ("--levels", 4), ("--channels", 128),
                            ("--gru-hidden", 128), ("--gru-layers", 2), ("--item-dim", 128),
                            ("--dropout", 0.1)):
        assert option in out and f"(default: {default})" in out


def test_sizes_and_session_policy_travel_from_train_to_export(capsys, tmp_path, log_file):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", *data_args(log_file, tmp_path), "--epochs", 1,
                         "--item-init", "random", "--kernel-size", 3, "--levels", 2,
                         "--channels", 16, "--item-dim", 8, "--gru-hidden", 8,
                         "--gap-s", 600, "--max-session-len", 50, "--out", run_dir)
    assert code == 0, err
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["kind"] == "hiertcn"
    assert {k: ckpt["model_config"][k] for k in ("kernel_size", "levels", "channels",
                                                 "item_dim", "gru_hidden")} == \
        {"kernel_size": 3, "levels": 2, "channels": 16, "item_dim": 8, "gru_hidden": 8}
    code, out, err = run(capsys, "export", "--checkpoint", run_dir, "--out", tmp_path / "exp")
    assert code == 0, err
    meta = json.loads((tmp_path / "exp" / "meta.json").read_text())
    assert meta["session"] == {"gap_s": 600, "max_session_len": 50}
    assert meta["receptive_field"] == 1 + 2 * (1 + 2)  # kernel 3, dilations 1 and 2
    # evaluate cuts sessions as training did, whatever --gap-s says (clicks are 60 s apart)
    outs = [run(capsys, "evaluate", *data_args(log_file, tmp_path), "--checkpoint", run_dir,
                *gap)[1] for gap in ([], ["--gap-s", 30])]
    assert outs[0].startswith("test ") and outs[0] == outs[1]


def test_evaluate_takes_a_gru4rec_run_folder_and_export_refuses_it(capsys, tmp_path, log_file):
    run_dir = tmp_path / "gru"
    code, _, err = run(capsys, "train", *data_args(log_file, tmp_path), "--model", "gru4rec",
                       "--epochs", 1, "--item-init", "random", "--out", run_dir)
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", *data_args(log_file, tmp_path),
                         "--checkpoint", run_dir)
    assert code == 0, err
    assert out.startswith("test recall@5 ") and "mrr@20" in out
    code, _, err = run(capsys, "export", "--checkpoint", run_dir, "--out", tmp_path / "exp")
    assert code == 2 and "gru4rec" in err and "HierTCN only" in err and err.count("\n") == 1


def test_evaluate_an_empty_run_folder_is_one_line(capsys, tmp_path, log_file):
    (tmp_path / "nothing").mkdir()
    code, _, err = run(capsys, "evaluate", *data_args(log_file, tmp_path),
                       "--checkpoint", tmp_path / "nothing")
    assert code == 2 and err.startswith("error: no checkpoint.pt in folder")
    assert err.count("\n") == 1
