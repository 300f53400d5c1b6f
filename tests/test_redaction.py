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
