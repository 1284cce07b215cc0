"""``paradoxplex node --check``: one line per check, and no password in any of them."""

from __future__ import annotations

from paradoxplex.node.cli.healthcheck import check_lines
from paradoxplex.shared.config import Address, NodeConfig
from tests.support.ports import free_port


async def test_a_redis_url_is_shown_without_its_passwords() -> None:
    first, second = free_port(), free_port()
    urls = [
        f"redis://app:s3cret@127.0.0.1:{first}/0",
        f"redis://:other-s3cret@127.0.0.1:{second}/0?password=query-s3cret",
    ]
    config = NodeConfig(
        listen=Address("127.0.0.1", 0),
        admin=Address("127.0.0.1", 0),
        redis=",".join(urls),
        node_id="checked",
    )
    lines = await check_lines(config, within=1.0)
    shown = (
        f"--redis redis://app:***@127.0.0.1:{first}/0,"
        f"redis://:***@127.0.0.1:{second}/0?password=***"
    )
    [redis_line] = [line for line in lines if "--redis" in line]
    assert redis_line.startswith(f"problem: {shown}: "), redis_line
    assert not any("s3cret" in line for line in lines), lines
