"""Deleting any one feature folder leaves a server that starts and serves, with the modules
built on the deleted one off by name (the same set as disabling it in the configuration)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hongyan
from hongyan.modules import ORDER
from hongyan.server.features import load_module_classes

SOURCE = Path(hongyan.__file__).resolve().parent
FOLDERS = sorted(p.name for p in (SOURCE / "modules").iterdir()
                 if (p / "__init__.py").exists())

# Start the real node on an ephemeral port, open a client stream, read its features.
PROBE = """
import asyncio, json, sys
from pathlib import Path
from hongyan.config.loader import load_config
from hongyan.server.node import Node

async def main(d):
    cfg = Path(d) / "h.toml"
    cfg.write_text(f"[server]\\ndata_dir = '{d}'\\nlog_level = 'warning'\\n"
                   f"[storage]\\nurl = 'sqlite:///{d}/h.db'\\n[c2s]\\nport = 0\\n"
                   "direct_tls_port = 0\\n[http]\\nport = 0\\ntls_port = 0\\n")
    node = Node(load_config(cfg))
    await node.start()
    r, w = await asyncio.open_connection("127.0.0.1", node.c2s_port)
    w.write(b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    got = b""
    while b"</stream:features>" not in got:
        got += await asyncio.wait_for(r.read(4096), 10)
    w.close()
    loaded = list(node.modules)
    await node.stop()
    print(json.dumps({"modules": loaded, "features": "starttls" in got.decode()}))

asyncio.run(main(sys.argv[1]))
"""


def test_every_feature_folder_is_listed_in_order() -> None:
    assert set(FOLDERS) == set(ORDER)


@pytest.mark.parametrize("folder", FOLDERS)
def test_deleting_a_feature_folder_leaves_a_server_that_starts(tmp_path: Path,
                                                                folder: str) -> None:
    tree = tmp_path / "src"
    shutil.copytree(SOURCE, tree / "hongyan",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.rmtree(tree / "hongyan" / "modules" / folder)
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(data)], cwd=tree,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["features"]
    expected = [c.name for c in load_module_classes([folder])]
    assert out["modules"] == expected
    for name in set(ORDER) - set(expected) - {folder}:
        assert f"module {name!r} is off" in proc.stderr, name
