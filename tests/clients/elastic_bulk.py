#!/usr/bin/env python3
"""Sends documents to logpipe with the official Elasticsearch and OpenSearch Python clients
(helpers.bulk), as crates/cli/tests/compat_elastic.rs asks: one client per index.

usage: elastic_bulk.py URL elasticsearch|opensearch INDEX COUNT [TOKEN]
Prints one JSON line: what the client reported (items sent, errors) and the server's info.
"""
import json
import sys

url, client, index, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
token = sys.argv[5] if len(sys.argv) > 5 else None


def docs():
    for i in range(count):
        yield {
            "_index": index,
            "_id": f"{client}-{i}",
            "_source": {
                "@timestamp": f"2025-03-01T12:00:{i % 60:02d}.{i:06d}Z",
                "message": f"{client} says hello {i}",
                "level": ["INFO", "WARN", "ERROR"][i % 3],
                "http": {"status": 200 + i % 5, "path": f"/item/{i}"},
            },
        }


if client == "elasticsearch":
    from elasticsearch import Elasticsearch, helpers

    es = Elasticsearch(url, api_key=token) if token else Elasticsearch(url)
    info = es.info()
    ok, errors = helpers.bulk(es, docs(), chunk_size=70)
elif client == "opensearch":
    from opensearchpy import OpenSearch, helpers

    es = OpenSearch([url], http_auth=("shipper", token)) if token else OpenSearch([url])
    info = es.info()
    ok, errors = helpers.bulk(es, docs(), chunk_size=70)
else:
    sys.exit(f"unknown client {client}")
print(json.dumps({"ok": ok, "errors": errors, "version": info["version"]["number"]}))
