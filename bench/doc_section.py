#!/usr/bin/env python3
"""Puts one section into docs/benchmarks.md (bench only).

    doc_section.py DOC NAME SECTION

SECTION starts with "<!-- NAME:begin" and ends with "<!-- NAME:end -->". The
section of that name already in DOC is replaced; without one, SECTION is
appended. bench/run.sh keeps every such section when it rewrites the page.
"""
import os
import re
import sys

path, name, sec = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    doc = open(path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
pat = re.compile(r"<!-- %s:begin.*?<!-- %s:end -->\n?" % (re.escape(name), re.escape(name)), re.S)
if pat.search(doc):
    doc = pat.sub(lambda m: sec + "\n", doc)
else:
    doc = doc.rstrip("\n") + "\n\n" + sec + "\n"
with open(path + ".new", "w") as f:
    f.write(doc)
os.replace(path + ".new", path)
