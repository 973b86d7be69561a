"""The doc-example runner reads pages as documented: blocks, markers, expected output, wildcard matching."""

from __future__ import annotations

import pytest

from tests.docs.harness import blocks_of, matches, server_args

PAGE = """# A page

<!-- doc-test: server --auth -->

```bash
echo hi
```

```text
hi
```

Prose.

<!-- doc-test: skip: starts a second server -->
```sh
muster serve
```

<!-- doc-test: timeout=2 -->
```bash
curl -N localhost:8080/watch
```

```python
print(1)
```

Some prose between.

```text
not the python block's output
```

<!-- doc-test: fails -->
```shell
curl localhost:8080/nope
```

```
a diagram, not run
```
"""


def test_blocks_markers_and_outputs() -> None:
    """Runnable blocks come in order with their marker; a text block only counts right after its block."""
    blocks = blocks_of(PAGE)
    assert ["shell", "shell", "shell", "python", "shell"] == [b.kind for b in blocks]
    assert "hi\n" == blocks[0].expected
    assert "starts a second server" == blocks[1].skip
    assert 2.0 == blocks[2].timeout
    assert blocks[3].expected is None  # prose came between
    assert blocks[4].fails
    assert ["--auth"] == server_args(PAGE)


def test_unknown_marker_is_refused() -> None:
    """A misspelt marker fails loudly instead of being ignored."""
    with pytest.raises(ValueError, match="unknown doc-test marker"):
        blocks_of("<!-- doc-test: skipp -->\n```bash\ntrue\n```\n")


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ('{"service_id":"…","ok":true}', '{"service_id":"6f1c22","ok":true}', True),
        ('{\n  "a": 1,\n  "b": [1, 2]\n}', '{"a":1,"b":[1,2]}', True),
        ('{"a":1}', '{"a":2}', False),
        ("total … services", "total 3 services\nmore", False),
        ("…", "anything at all", True),
    ],
)
def test_matching_ignores_whitespace_and_honours_ellipsis(expected: str, actual: str, same: bool) -> None:
    """`…` stands for any text; whitespace is not compared; everything else must be equal."""
    assert same == matches(expected, actual)
