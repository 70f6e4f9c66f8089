# tests/: the mock upstream, the black-box harness, fuzz corpora.
