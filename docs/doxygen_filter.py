#!/usr/bin/env python3
"""Doxygen INPUT_FILTER for dip's headers (docs/Doxyfile): prints a header with its plain `//`
comments turned into Doxygen comments, line for line, so warnings and source links keep their
line numbers. The headers themselves are not changed.

- The file's opening comment block (before or after `#pragma once`) documents the file.
- A comment block at namespace or class scope directly above a declaration documents it.
- A trailing comment after a member, an enumerator or a parameter documents that (`///<`), and
  so do comment lines continuing it at the same column.
- Comments inside function bodies, comments followed by a blank line (section notes) and
  comments above `namespace`, access specifiers or preprocessor lines other than `#define` stay
  plain comments, invisible to Doxygen.
- Lines of a comment indented by two or more extra spaces (drawings, code) become a code block.

Usage: doxygen_filter.py FILE (Doxygen appends the file name).
"""
import os
import re
import sys

SCOPE_HEAD = re.compile(
    r"^(template\s*<.*>\s*)?(inline\s+)?(export\s+)?"
    r"(namespace|class|struct|union|enum(\s+class|\s+struct)?|extern\s+\"C\")\b[^(=]*$")
COMMENT_LINE = re.compile(r"^(\s*)//(?![/!])(.*)$")
ACCESS = re.compile(r"^\s*(public|private|protected)\s*:")


def strip_code(line, state):
    """The line's code without string/char literals and comments; `state` carries /* */."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out), None
            state["block"] = False
            i = end + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            return "".join(out), i
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        if c in "\"'":
            # A digit separator (1'000) is not a character literal.
            if c == "'" and i > 0 and line[i - 1].isalnum() and i + 1 < n and line[i + 1].isalnum():
                i += 1
                continue
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out), None


def code_block(texts):
    """Comment texts (after `//`) with drawings/code wrapped in @code ... @endcode in place."""
    indented = [t.startswith("   ") and t.strip() != "" for t in texts]
    result = list(texts)
    i = 0
    while i < len(texts):
        if not indented[i]:
            i += 1
            continue
        before = texts[i - 1].strip() if i > 0 else ""
        if before and not before.endswith(":"):
            # The continuation of a list item or of a sentence, not code.
            while i < len(texts) and indented[i]:
                i += 1
            continue
        j = i
        while j + 1 < len(texts) and (indented[j + 1] or (texts[j + 1].strip() == "" and j + 2 < len(texts)
                                                            and indented[j + 2])):
            j += 1
        result[i] = " @code{.unparsed}" + texts[i]
        result[j] = result[j] + " @endcode"
        i = j + 1
    return result


def main(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    relative = path.replace(os.sep, "/")
    for root in ("reference_executor/include/", "include/"):
        k = relative.rfind(root)
        if k >= 0:
            relative = relative[k + len(root):]
            break

    out = list(lines)
    state = {"block": False}
    stack = []          # per open brace: True when it opens a namespace/class/struct/enum
    prefix = ""         # code since the last ; { or }
    file_doc_done = False
    i = 0
    n = len(lines)
    trailing_col = None  # column of the previous line's converted trailing comment
    while i < n:
        line = lines[i]
        at_scope = all(stack)
        m = COMMENT_LINE.match(line)
        if m and not state["block"]:
            # A block of comment-only lines.
            j = i
            while j < n and COMMENT_LINE.match(lines[j]):
                j += 1
            block = list(range(i, j))
            texts = [COMMENT_LINE.match(lines[k]).group(2) for k in block]
            indents = [COMMENT_LINE.match(lines[k]).group(1) for k in block]
            if not file_doc_done and not stack and prefix.strip() == "":
                # The file's contract: `/// @file dip/x.hpp <first line>`.
                file_doc_done = True
                texts = code_block(texts)
                out[i] = "/// @file " + relative + " " + texts[0].lstrip()
                for k, t in zip(block[1:], texts[1:]):
                    out[k] = "///" + t
            elif trailing_col is not None and at_scope and len(indents[0]) == trailing_col:
                for k, t, ind in zip(block, texts, indents):
                    out[k] = ind + "///<" + t
            elif at_scope:
                following = lines[j] if j < n else ""
                documents = (following.strip() != "" and not following.lstrip().startswith("namespace")
                             and not ACCESS.match(following) and not following.lstrip().startswith("}")
                             and (not following.lstrip().startswith("#")
                                  or following.lstrip().startswith("#define")))
                if documents:
                    texts = code_block(texts)
                    for k, t, ind in zip(block, texts, indents):
                        out[k] = ind + "///" + t
            trailing_col = None
            i = j
            continue
        code, comment_at = strip_code(line, state)
        trailing_col = None
        if comment_at is not None and line[comment_at:comment_at + 3] not in ("///", "//!") and code.strip():
            stripped = code.rstrip()
            # A member, enumerator or parameter followed by its comment, at declaration scope.
            if at_scope and stripped[-1] in ";,":
                out[i] = line[:comment_at] + "///<" + line[comment_at + 2:]
                trailing_col = comment_at
        for c in code:
            if c == "{":
                head = " ".join(prefix.split())
                stack.append(bool(SCOPE_HEAD.match(head)))
                prefix = ""
            elif c == "}":
                if stack:
                    stack.pop()
                prefix = ""
            elif c == ";":
                prefix = ""
            else:
                prefix += c
        if code.strip().startswith("#"):
            prefix = ""
        else:
            prefix += " "
        i += 1
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
