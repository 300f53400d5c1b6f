from asclepius.redaction import redact, redact_text, redact_url


def test_user_info_and_secret_query_values_are_removed():
    assert redact_url("https://alice:s3cret@example.org/v1") == "https://***@example.org/v1"
    redacted = redact_url("https://h.example/v1?api-key=abc123&deployment=gpt")
    assert redacted == "https://h.example/v1?***"  # the whole query: which names carry secrets is unknowable
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url(None) is None


def test_text_and_nested_values():
    message = "failed to reach http://bob:pw@10.0.0.2/v1 with key sk-abcdefghijkl"
    cleaned = redact_text(message)
    assert "pw@" not in cleaned and "sk-abcdefghijkl" not in cleaned and "10.0.0.2" in cleaned
    nested = redact({"urls": ["http://u:p@h/x?token=t0k3n"], "n": 3})
    assert "p@" not in nested["urls"][0] and "t0k3n" not in nested["urls"][0] and nested["n"] == 3


def test_the_whole_query_string_is_dropped_whatever_its_names():
    for query in ("code=4/0AX", "pass=hunter2", "jwt=eyJhbGciOi.x.y", "k=abc", "sig=1&se=2"):
        redacted = redact_url(f"https://h.example/v1/x?{query}#frag")
        assert redacted == "https://h.example/v1/x?***", query
    assert redact_url("https://h.example/v1") == "https://h.example/v1"


def test_query_strings_and_credentials_in_server_messages():
    # The test server's 404 echoes the path the openai client built from a base URL with a query.
    echoed = "http 404: no route /v1/?api-key=abc123chat/completions"
    assert redact_text(echoed) == "http 404: no route /v1/?***"
    assert redact_text('{"api-key": "s3cr3t", "password": hunter2}') == '{"api-key": "***", "password": ***}'
    assert redact_text("Incorrect API key provided: zz99.") == "Incorrect API key provided: ***"
    assert redact_text("Authorization: Bearer abc.def") == "Authorization: ***"
    kept = "What is the dose? Give it in mg. max_tokens=256, a token: none"
    assert redact_text(kept) == kept  # ordinary text, questions and counts stay as they are


def test_a_registered_key_is_redacted_whatever_its_length_and_redaction_is_stable():
    from asclepius.redaction import holds_secret, register_secret

    register_secret("q7Zx1p")  # six characters: no pattern would catch it
    assert redact_text("server said q7Zx1p!") == "server said ***!"
    assert redact_url("http://h/q7Zx1p/v1") == "http://h/***/v1"
    for text in ("http 404: no route /v1/?***", "https://***@h/v1?***", "key provided: ***"):
        assert redact_text(text) == text and not holds_secret(text)  # redacting twice changes nothing
    assert holds_secret("see https://h/v1?token=1") and not holds_secret(None)
