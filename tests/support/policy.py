"""Fixtures for the policy tests: the baseline bundle and small hand-made bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.compiler import compile_bundle
from policy.evaluator import Evaluator
from policy.loader import load_bundle, load_bundle_bytes

BASELINE = Path(__file__).resolve().parents[2] / "policy" / "bundles" / "baseline" / "bundle.yaml"

# A small, valid bundle that tests edit by string replacement.
SMALL = """\
schema: schakel.policy/v1
name: small
version: "1"
phases: [aanmelding, triage, casusoverleg, afschaling]
org_types: [politie, ggz, gemeente, zvh]
roles: [procesregisseur]
legal_bases:
  WGS: collaboration act
  AVG-6.1e: public task
lists:
  outcomes: [doelen-bereikt, afgebroken]
activities:
  act.one:
    uri: urn:test:act.one
    purpose: testing
    legal_bases: [WGS, AVG-6.1e]
    retention: {facts_days: 30, links_days: 30, audit_days: 90}
categories:
  regular.cat:
    sensitivity: regular
    fields:
      status: {type: code, values: [a, b]}
      count: number
      flag: bool
      when: date
      contact: contact
  health.cat:
    sensitivity: art9
    fields:
      in_care: bool
rules:
  - id: r-regular
    activity: act.one
    phases: [casusoverleg]
    providers: [politie]
    recipients: [gemeente]
    categories: [regular.cat]
    legal_basis: WGS
    minimise:
      regular.cat: {status: keep}
  - id: r-health-unconditional
    activity: act.one
    phases: [casusoverleg]
    providers: [ggz]
    recipients: [gemeente]
    categories: [health.cat]
    legal_basis: AVG-6.1e
    minimise:
      health.cat: {in_care: keep}
"""


@pytest.fixture(scope="session")
def baseline() -> Evaluator:
    """The evaluator of the committed baseline bundle."""
    return Evaluator(compile_bundle(load_bundle(BASELINE)))


def small(text: str = SMALL) -> Evaluator:
    """The evaluator of a bundle given as YAML text."""
    return Evaluator(compile_bundle(load_bundle_bytes(text.encode(), "small.yaml")))
