"""The gate's verdicts for CI: JUnit XML (one test case per check) and GitHub Actions annotations."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tuning.gate.checks import Check


def junit_xml(checks: list[Check]) -> str:
    """One testsuite "quality-gate" with one testcase per check, so CI lists every check as a test."""
    failures = sum(1 for check in checks if not check.passed)
    skipped = sum(1 for check in checks if check.skipped)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="quality-gate",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
    )
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname="quality-gate", name=check.name)
        if check.skipped:
            ET.SubElement(case, "skipped", message=check.message)
        elif not check.passed:
            failure = ET.SubElement(case, "failure", message=check.message, type="GateFailed")
            failure.text = check.message
        else:
            # Passing checks keep their numbers visible in the CI's test view.
            ET.SubElement(case, "system-out").text = check.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def github_annotations(checks: list[Check]) -> list[str]:
    """GitHub Actions workflow commands: ``::error`` per failed check, ``::warning`` per skipped one.

    The runner turns them into annotations on the run's summary page; passing checks need none.
    """
    lines = []
    for check in checks:
        if check.passed and not check.skipped:
            continue
        level = "warning" if check.skipped else "error"
        lines.append(f"::{level} title={_escape_property(f'gate: {check.name}')}::{_escape_data(check.message)}")
    return lines


def _escape_data(text: str) -> str:
    # The runner's escaping for a command's message: % first, so the others are not escaped twice.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
