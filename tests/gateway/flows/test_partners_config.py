"""The ``[[partners]]`` section: the local partner organisations a hit/no-hit round asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, PartnerOrgSection, load_config
from tests.support.pki import RR, Federation


def _load(tmp_path: Path, partners: str) -> list[PartnerOrgSection]:
    fed = Federation(tmp_path / "pki")
    path = fed.write_config(fed.node(RR), extra=partners)
    return load_config(path, environ={}).partners


def test_partners_are_read_in_order(tmp_path: Path) -> None:
    text = '[[partners]]\nid = "politie-rr"\norg_type = "politie"\n'
    text += '[[partners]]\nid = "ggz-rr"\norg_type = "ggz"\n'
    assert _load(tmp_path, text) == [
        PartnerOrgSection("politie-rr", "politie"),
        PartnerOrgSection("ggz-rr", "ggz"),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[partners]]\nid = "Bad Id"\norg_type = "ggz"\n', "partners[0].id"),
        ('[[partners]]\nid = "ggz-rr"\norg_type = "kapper"\n', "partners[0].org_type: 'kapper'"),
        (
            '[[partners]]\nid = "ggz-rr"\norg_type = "ggz"\n'
            '[[partners]]\nid = "ggz-rr"\norg_type = "ggz"\n',
            "partners[1].id: 'ggz-rr' is listed twice",
        ),
        ('[[partners]]\nid = "ggz-rr"\n', "partners[0].org_type: missing"),
    ],
)
def test_a_bad_partner_entry_names_its_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert words in str(err.value)
