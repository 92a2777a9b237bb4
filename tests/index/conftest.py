"""The Milvus server fixtures of these tests (``milvus_uri``, ``milvus_token``, ``collection_name``)
live in ../conftest.py, shared with tests/test_search.py."""
