"""Address normalisation and domain rules (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.sync.addresses import (
    domain_of_website,
    in_domains,
    is_work_domain,
    matches_blocklist,
    normalise_address,
    wire_address,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Anna.Smith@Fabrikam.COM", "anna.smith@fabrikam.com"),
        ("  <bob@northwindtraders.com> ", "bob@northwindtraders.com"),
        ("mailto:eve@litwareinc.com", "eve@litwareinc.com"),
        ("anna+crm@fabrikam.com", "anna+crm@fabrikam.com"),  # plus-tags are kept
        ("JÖRG@Bücher.example", "jörg@bücher.example"),
        ("jörg@xn--bcher-kva.example", "jörg@bücher.example"),  # IDN agrees with Unicode
        ("STRASSE@x.example", "strasse@x.example"),
        ("Straße@x.example", "strasse@x.example"),  # casefold, not lower
        ("no-at-sign", None),
        ("two@@ats.com", None),
        ("a@b@c.com", None),
        ("@fabrikam.com", None),
        ("bob@localhost", None),
        ("bob@fabrikam..com", None),
        ("bo b@fabrikam.com", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise(raw, expected):
    assert normalise_address(raw) == expected


@given(st.emails())
def test_normalise_is_idempotent_and_case_blind(address):
    once = normalise_address(address)
    assert once is not None
    assert normalise_address(once) == once
    assert normalise_address(address.upper()) == normalise_address(address.lower())


@given(st.text(max_size=60))
def test_normalise_never_raises(text):
    result = normalise_address(text)
    assert result is None or result.count("@") == 1


def test_website_domains():
    assert domain_of_website("https://www.Fabrikam.com/about") == "fabrikam.com"
    assert domain_of_website("northwindtraders.com:8080") == "northwindtraders.com"
    assert domain_of_website("") is None


def test_work_domains_exclude_public_providers_and_our_own():
    own = frozenset({"contoso.com"})
    assert is_work_domain("fabrikam.com", own)
    assert not is_work_domain("gmail.com", own)
    assert not is_work_domain("contoso.com", own)
    assert in_domains("x@eu.contoso.com", own)
    assert not in_domains("x@notcontoso.com", own)


def test_blocklist_forms():
    patterns = frozenset({"*@noreply.example.com", "spam.example", "boss@fabrikam.com"})
    assert matches_blocklist("any@noreply.example.com", patterns)
    assert matches_blocklist("x@mail.spam.example", patterns)
    assert matches_blocklist("boss@fabrikam.com", patterns)
    assert not matches_blocklist("anna@fabrikam.com", patterns)
    assert not matches_blocklist("x@example.com", patterns)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("juergen@bäckerei-müller.de", "juergen@xn--bckerei-mller-bfb28a.de"),
        ("Ann@Example.com", "Ann@Example.com"),  # ASCII: exactly as given
        ("ann@xn--bckerei-mller-bfb28a.de", "ann@xn--bckerei-mller-bfb28a.de"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_wire_address_sends_unicode_domains_as_a_labels(given, sent):
    assert wire_address(given) == sent
    if "@" in given:
        assert normalise_address(sent) == normalise_address(given)  # still the same contact
