"""Real clients against a real server: uvicorn on 127.0.0.1 (a free port) in a background thread, then the `openai`
client and `huggingface_hub.InferenceClient`, unchanged, must get the Python API's embeddings back.

The server has a key file, so the clients' own ways of sending a key (OpenAI's `api_key`, the Hub client's
`token`) are exercised too. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

DEFAULT = "all-MiniLM-L6-v2"
TEXTS = ["The food was delicious and the waiter was friendly.", "Embeddings map text to vectors.", "ünïcödé ✓"]


@pytest.fixture(scope="module")
def api_key(tmp_path_factory):
    from robertaops.serving.auth import add_key

    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    return path, add_key(path, ["infer"], "clients")


@pytest.fixture(scope="module")
def server(make_app, api_key, monkeypatch_module):
    import uvicorn

    monkeypatch_module.setenv("NO_PROXY", "127.0.0.1,localhost")
    app = make_app(names=[DEFAULT, "classifier"], api_keys=api_key[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def openai_client(server, api_key):
    import openai

    return openai.OpenAI(base_url=f"{server}/v1", api_key=api_key[1], max_retries=0)


def test_openai_default_base64(openai_client, default_model):
    out = openai_client.embeddings.create(model=DEFAULT, input=TEXTS)  # the client asks for base64 by default
    assert [d.index for d in out.data] == [0, 1, 2] and out.model == DEFAULT
    np.testing.assert_allclose([d.embedding for d in out.data], default_model.embed(TEXTS), atol=1e-5)
    assert out.usage.prompt_tokens == sum(len(ids) for ids in default_model.tokenize(TEXTS))


def test_openai_float_and_dimensions(openai_client, default_model):
    out = openai_client.embeddings.create(model=DEFAULT, input=TEXTS[0], encoding_format="float", dimensions=128)
    full = default_model.embed(TEXTS[0])[:128]
    np.testing.assert_allclose(out.data[0].embedding, full / np.linalg.norm(full), atol=1e-5)


def test_openai_models_and_errors(openai_client, server):
    import openai

    assert [m.id for m in openai_client.models.list()] == [DEFAULT, "classifier"]
    with pytest.raises(openai.NotFoundError):
        openai_client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).embeddings.create(model=DEFAULT,
                                                                                              input="x")


@pytest.fixture
def hub_online(monkeypatch):
    """tests/conftest.py switches the Hub client offline, which also blocks URL endpoints; these tests call only
    127.0.0.1 (a URL model goes straight to that URL, with no Hub lookup), so allow requests for their duration."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.mark.usefixtures("hub_online")
def test_huggingface_feature_extraction(server, api_key, default_model):
    from huggingface_hub import InferenceClient

    client = InferenceClient(model=server, token=api_key[1])
    out = client.feature_extraction(TEXTS[0])
    assert out.shape == (1, default_model.dimension)
    np.testing.assert_allclose(out[0], default_model.embed(TEXTS[0]), atol=1e-5)
    batch = client.feature_extraction(TEXTS, normalize=False, truncate=True)
    np.testing.assert_allclose(batch, default_model.embed(TEXTS, normalize=False, truncate=True), atol=1e-5)


@pytest.mark.usefixtures("hub_online")
def test_huggingface_sentence_similarity(server, api_key, default_model):
    from huggingface_hub import InferenceClient

    scores = InferenceClient(model=server, token=api_key[1]).sentence_similarity(TEXTS[0], TEXTS[1:])
    vectors = default_model.embed(TEXTS)
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-5)


@pytest.mark.usefixtures("hub_online")
def test_huggingface_errors_surface(server):
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError) as info:
        InferenceClient(model=server, token="wrong").feature_extraction("x")
    assert info.value.response.status_code == 401
