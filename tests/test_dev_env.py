"""Two checkouts on one machine stay apart: bin/dev gives each database name a
Redis database of its own (broker and cache) and gunicorn's control socket a
directory of its own, and the settings put the test suite's broker there."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import os
import runpy
import socket
import threading
from urllib.parse import urlsplit

import pytest

from tests.support import ROOT

SERVER = "redis://127.0.0.1:6379"


def load_dev():
    """bin/dev as a module (a stdlib script: importing it starts nothing)."""
    loader = importlib.machinery.SourceFileLoader("bin_dev", str(ROOT / "bin" / "dev"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


dev = load_dev()


class FakeRedis:
    """The commands a claim sends, over sixteen databases of one dict each."""

    def __init__(self, data: dict[int, dict[str, str]] | None = None):
        self.databases = {number: dict((data or {}).get(number, {})) for number in range(16)}
        self.selected = 0
        self.expiring: set[tuple[int, str]] = set()

    def __call__(self, command: str, *args: str):
        keys = self.databases[self.selected]
        if command == "SELECT":
            self.selected = int(args[0])
            return "OK"
        if command == "GET":
            return keys.get(args[0])
        if command == "DBSIZE":
            return len(keys)
        if command == "SET" and args[2:3] == ("NX",):
            if args[0] in keys:
                return None
            keys[args[0]] = args[1]
            self.expiring.add((self.selected, args[0]))
            return "OK"
        if command == "EXPIRE":
            self.expiring.add((self.selected, args[0]))
            return 1 if args[0] in keys else 0
        raise AssertionError(f"unexpected command {command} {args}")


def redis_db(env: dict[str, str]) -> int:
    return int(urlsplit(env["REDIS_URL"]).path.lstrip("/"))


def test_two_checkouts_get_their_own_redis_databases_and_control_socket_directories(tmp_path):
    redis = FakeRedis()
    first = dev.checkout_env("saas_platform", tmp_path / "one" / ".local", SERVER, redis)
    second = dev.checkout_env("saas_platform_two", tmp_path / "two" / ".local", SERVER, redis)

    databases = [redis_db(first), redis_db(second),
                 int(first["TEST_BROKER_REDIS_DB"]), int(second["TEST_BROKER_REDIS_DB"])]
    assert len(set(databases)) == 4, databases
    # 0 is what anything unconfigured uses, 15 a test run started without bin/dev.
    assert all(1 <= number <= 14 for number in databases), databases
    assert first["REDIS_URL"].startswith(SERVER + "/")
    assert first["GUNICORN_CONTROL_DIR"] == str(tmp_path / "one" / ".local" / "gunicorn" / "saas_platform")
    assert second["GUNICORN_CONTROL_DIR"] == str(tmp_path / "two" / ".local" / "gunicorn" / "saas_platform_two")


def test_a_name_finds_the_same_database_on_every_run(tmp_path):
    redis = FakeRedis()
    runs = [dev.checkout_env(name, tmp_path, SERVER, redis) for name in ("a_db", "b_db", "a_db", "b_db")]

    assert runs[0] == runs[2] and runs[1] == runs[3]
    assert runs[0]["REDIS_URL"] != runs[1]["REDIS_URL"]


def test_the_bench_database_is_apart_from_the_platform_in_the_same_checkout(tmp_path):
    redis = FakeRedis()
    platform = dev.checkout_env("saas_platform", tmp_path, SERVER, redis)
    bench = dev.checkout_env("saas_bench", tmp_path, SERVER, redis)

    assert redis_db(platform) != redis_db(bench)
    assert platform["GUNICORN_CONTROL_DIR"] != bench["GUNICORN_CONTROL_DIR"]


def test_names_whose_hashes_clash_still_get_different_databases(tmp_path):
    names = (f"saas_{number}" for number in itertools.count())
    first = next(names)
    second = next(name for name in names if dev.preferred_redis_db(name) == dev.preferred_redis_db(first))
    redis = FakeRedis()

    one = dev.checkout_env(first, tmp_path, SERVER, redis)
    other = dev.checkout_env(second, tmp_path, SERVER, redis)

    assert redis_db(one) == dev.preferred_redis_db(first)
    assert redis_db(other) != redis_db(one)


def test_a_database_holding_data_nobody_claimed_is_passed_over(tmp_path):
    # Someone's explicit REDIS_URL uses the database the hash would pick.
    preferred = dev.preferred_redis_db("saas_platform")
    redis = FakeRedis({preferred: {"_kombu.binding.default": "x"}})

    env = dev.checkout_env("saas_platform", tmp_path, SERVER, redis)

    assert redis_db(env) != preferred
    assert redis.databases[preferred] == {"_kombu.binding.default": "x"}


def test_with_every_database_taken_it_shares_the_preferred_one_and_says_so(tmp_path, capsys):
    taken = FakeRedis({number: {dev.REDIS_CLAIM_KEY: f"other_{number}"} for number in dev.REDIS_DBS})

    env = dev.checkout_env("saas_platform", tmp_path, SERVER, taken)

    assert redis_db(env) == dev.preferred_redis_db("saas_platform")
    assert "sharing database" in capsys.readouterr().err


def test_a_claim_lapses_unless_its_name_runs_again(tmp_path):
    redis = FakeRedis()

    env = dev.checkout_env("saas_platform", tmp_path, SERVER, redis)

    assert (redis_db(env), dev.REDIS_CLAIM_KEY) in redis.expiring


def test_an_explicit_redis_url_is_used_as_given(tmp_path):
    env = dev.checkout_env("saas_platform", tmp_path, None)

    assert "REDIS_URL" not in env and "TEST_BROKER_REDIS_DB" not in env
    assert env["GUNICORN_CONTROL_DIR"] == str(tmp_path / "gunicorn" / "saas_platform")


def serve_resp(conn: socket.socket, redis: FakeRedis) -> None:
    """Answer RESP requests on ``conn`` from ``redis`` until the peer closes."""
    reader = conn.makefile("rb")
    while header := reader.readline():
        args = []
        for _ in range(int(header[1:])):
            size = int(reader.readline()[1:])
            args.append(reader.read(size + 2)[:-2].decode())
        reply = redis(*args)
        if reply is None:
            conn.sendall(b"$-1\r\n")
        elif isinstance(reply, int):
            conn.sendall(b":%d\r\n" % reply)
        elif reply == "OK":
            conn.sendall(b"+OK\r\n")
        else:
            conn.sendall(b"$%d\r\n%s\r\n" % (len(reply.encode()), reply.encode()))


def test_claims_go_over_the_redis_protocol(tmp_path):
    redis = FakeRedis()
    client, server = socket.socketpair()
    thread = threading.Thread(target=serve_resp, args=(server, redis), daemon=True)
    thread.start()
    try:
        env = dev.checkout_env("saas_platform", tmp_path, SERVER, dev.resp_caller(client))
    finally:
        client.close()
        thread.join(timeout=5)
        server.close()

    assert redis.databases[redis_db(env)] == {dev.REDIS_CLAIM_KEY: "saas_platform"}
    assert redis.databases[int(env["TEST_BROKER_REDIS_DB"])] == {dev.REDIS_CLAIM_KEY: "test_saas_platform"}


def gunicorn_config(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_CONTROL_DIR", "OPS_PORT"):
        monkeypatch.delenv(name, raising=False)
    # Given, so that reading the file does not make a directory and export it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))


def test_each_gunicorn_master_has_its_own_control_socket(monkeypatch, tmp_path):
    web = gunicorn_config(monkeypatch, GUNICORN_CONTROL_DIR=str(tmp_path), GUNICORN_BIND="0.0.0.0:8000")
    other = gunicorn_config(monkeypatch, GUNICORN_CONTROL_DIR=str(tmp_path), GUNICORN_BIND="127.0.0.1:41234")

    assert web["control_socket"] == str(tmp_path / "0.0.0.0_8000.ctl")
    assert other["control_socket"] == str(tmp_path / "127.0.0.1_41234.ctl")


def test_without_a_directory_gunicorn_keeps_its_default(monkeypatch):
    assert "control_socket" not in gunicorn_config(monkeypatch, GUNICORN_BIND="0.0.0.0:8000")


def test_the_suite_broker_is_on_the_database_bin_dev_chose(settings):
    if os.environ.get("CELERY_BROKER_URL"):
        pytest.skip("CELERY_BROKER_URL is set explicitly")
    broker = urlsplit(settings.CELERY_BROKER_URL)

    assert broker.path == f"/{settings.TEST_BROKER_REDIS_DB}"
    assert broker.netloc == urlsplit(settings.REDIS_URL).netloc
