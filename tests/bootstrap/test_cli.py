"""The ``dacn`` command line: help, homes and testnets, state export from a real store, and the API commands
against a real in-process node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from bootstrap.cli import build_parser, export_state, main
from bootstrap.cli.devnet import find_port_base
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node
from ledger.genesis import genesis_state
from ledger.state import state_root, total_supply
from ledger.tx import Transfer

SUBCOMMANDS = ("init", "testnet", "node", "devnet", "worker", "client", "balance", "submit", "job", "tx",
               "status", "state", "demo", "loadgen", "verify-proof", "jobs")


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, name
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(sub) == set(SUBCOMMANDS)
    devnet_help = sub["devnet"].format_help()
    for action in ("up", "status", "down"):
        assert action in devnet_help


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["submit", "--client", "a"])  # --model and --reward missing
    assert exc.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_init_and_testnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path / "h"), "--api", "off", "--p2p", "127.0.0.1:0"]) == 0
    assert "12D3KooW" in capsys.readouterr().out
    assert (tmp_path / "h" / "genesis.json").exists()
    assert NodeConfig.load(tmp_path / "h").api_listen is None
    # a second init refuses to overwrite the home
    assert main(["init", "--home", str(tmp_path / "h")]) == 1
    assert "already initialised" in capsys.readouterr().err

    assert main(["testnet", "--nodes", "3", "--validators", "2", "--out", str(tmp_path / "net")]) == 0
    out = capsys.readouterr().out
    assert out.count("validator") == 2 and out.count("observer") == 1
    genesis = {(tmp_path / "net" / f"node{i}" / "genesis.json").read_text() for i in range(3)}
    assert len(genesis) == 1  # one genesis, shared
    assert NodeConfig.load(tmp_path / "net" / "node2").bootstrap[0].startswith("/ip4/127.0.0.1/tcp/4001/p2p/")


def test_bad_flags_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = find_port_base(1)
    assert main(["status", "--node", f"http://127.0.0.1:{port}"]) == 1
    assert "error:" in capsys.readouterr().err
    assert main(["devnet", "up", "--dir", str(tmp_path / "d"), "--faulty", "x"]) == 1
    assert "INDEX:MODE" in capsys.readouterr().err
    assert main(["devnet", "status", "--dir", str(tmp_path / "nothing")]) == 1
    assert "no devnet here" in capsys.readouterr().err


async def test_state_export_matches_the_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    init_home(home, config=NodeConfig.test(), chain_id="export-test")
    node = Node(home, NodeConfig.test())
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        payee = bytes(node.keystore.get_or_create("payee").verify_key)
        tx_id = await node.sign_and_submit("faucet", Transfer(to=payee, amount=1234))
        res = await node.wait_for_tx(tx_id, 20.0)
        assert res["status"] == "committed"
        committed_at = res["height"]
        # export while the node runs (read-only sqlite): the state at the tx's height has the transfer
        live = export_state(home, committed_at)
        node.stop()
    final_root, final_height = node.chain.root.hex(), node.chain.height

    assert live["height"] == committed_at
    payee_text = node.display_id(payee)
    assert live["accounts"][payee_text]["balance"] == 1234
    out = tmp_path / "state.json"
    assert main(["state", "export", "--home", str(home), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["height"] == final_height and doc["state_root"] == final_root
    genesis_doc = export_state(home, 0)
    g = genesis_state(node.genesis)
    assert genesis_doc["state_root"] == state_root(g).hex() and payee_text not in genesis_doc["accounts"]
    assert doc["total_supply"] == total_supply(g)  # transfers and fees never mint
    assert main(["state", "export", "--home", str(home), "--height", str(final_height + 1000)]) == 1
    assert "--height" in capsys.readouterr().err


async def test_api_commands_against_a_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    init_home(home, config=NodeConfig.test(), chain_id="cli-test")
    node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        url = "http://{}:{}".format(*node.api_address)

        async def dacn(*argv: str) -> tuple[int, str, str]:
            rc = await trio.to_thread.run_sync(main, [*argv, "--node", url])
            cap = capsys.readouterr()
            return rc, cap.out, cap.err

        rc, out, _ = await dacn("client", "register", "carol", "--balance", "500")
        assert rc == 0 and json.loads(out)["balance"] == 500
        rc, out, _ = await dacn("balance", "carol")
        assert rc == 0 and json.loads(out)["balance"] == 500
        rc, out, err = await dacn("submit", "--client", "carol", "--model", "kmeans", "--reward", "30",
                                  "--params", '{"k": 2}', "--synthetic", "blobs:64:2:9", "--no-wait")
        assert rc == 0, err
        job_id = json.loads(out[out.index("{"):])["job_id"]
        job = node.state.jobs[bytes.fromhex(job_id)]
        spec = node.spec_of(job.params_digest)
        assert spec is not None and spec.params["k"] == 2 and job.reward == 30
        rc, out, _ = await dacn("job", job_id)
        assert rc == 0 and json.loads(out)["job_id"] == job_id
        rc, out, _ = await dacn("status", "--json")
        assert rc == 0 and json.loads(out)["stats"]["total_jobs"] == 1
        rc, out, _ = await dacn("status")
        assert rc == 0 and "height" in out and "jobs      1 total" in out

        needed = node.state.params.commit_blocks_needed(30_000)
        for argv, word in ((("--model", "astrology"), "model"), (("--model", "pca", "--params", "[1"), "--params"),
                           (("--model", "pca", "--synthetic", "blobs:x"), "n_samples"),
                           (("--model", "kmeans", "--params", '{"k": 90}', "--synthetic", "blobs:64:2"), "params.k"),
                           (("--model", "pca", "--time-limit-ms", "30000"), f"at least {needed} blocks")):
            rc, _, err = await dacn("submit", "--client", "carol", "--reward", "5", "--no-wait", *argv)
            assert rc == 1 and "error:" in err and word in err, err
        assert len(node.state.jobs) == 1
        rc, out, err = await dacn("submit", "--client", "carol", "--model", "pca", "--reward", "5", "--no-wait",
                                  "--time-limit-ms", "30000", "--commit-window", str(needed))
        assert rc == 0, err
        job = node.state.jobs[bytes.fromhex(json.loads(out[out.index("{"):])["job_id"])]
        assert (job.time_limit_ms, job.commit_window) == (30_000, needed)
        # dacn jobs: a page at a time, the cursor of the next page on stderr; --all walks every page
        rc, out, err = await dacn("jobs", "--limit", "1", "--json")
        assert rc == 0 and len(out.splitlines()) == 1 and "2 jobs match" in err and "--cursor " in err, err
        first = json.loads(out)["job_id"]
        rc, out, err = await dacn("jobs", "--cursor", err.split("--cursor ")[1].split()[0], "--json")
        assert rc == 0 and [json.loads(line)["job_id"] for line in out.splitlines()] == [job_id], err
        rc, out, err = await dacn("jobs", "--all", "--limit", "1", "--oldest")
        assert rc == 0 and [line[:16] for line in out.splitlines()[1:]] == [job_id[:16], first[:16]], out
        rc, _, err = await dacn("jobs", "--limit", "0")
        assert rc == 1 and "limit" in err, err
        rc, out, err = await dacn("job", job_id)  # a person's line on stderr, the view as JSON on stdout
        assert rc == 0 and json.loads(out)["outcomes"] == [] and err.startswith(json.loads(out)["status"])
        # a dataset file travels as a binary upload and the job names it by digest; its tx can be looked up
        import numpy as np

        data = tmp_path / "points.npy"
        np.save(data, np.random.default_rng(3).normal(size=(80, 3)))
        rc, out, err = await dacn("submit", "--client", "carol", "--model", "pca", "--reward", "5", "--no-wait",
                                  "--data", str(data))
        assert rc == 0 and "uploaded (80 rows × 3 features" in out, (out, err)
        doc = json.loads(out[out.index("{"):])
        job = node.state.jobs[bytes.fromhex(doc["job_id"])]
        assert node.blobs.get(job.dataset_digest) is not None
        rc, out, err = await dacn("tx", doc["tx_id"])
        assert rc == 0 and json.loads(out)["status"] in ("pending", "committed") and err.split()[0] in out
        rc, _, err = await dacn("submit", "--client", "carol", "--model", "pca", "--reward", "5", "--no-wait",
                                "--data", str(tmp_path / "missing.npy"))
        assert rc == 1 and "missing.npy" in err
        node.stop()
