"""Runtime PHI variables: every written and spoken form of a call's values becomes its placeholder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redact import Redactor, redact_detailed, redact_text
from redact.variables import declare_names, declared_names, known_placeholders, placeholder_for


@pytest.fixture
def declared() -> Iterator[None]:
    """This deployment declares `member_id` and `insurance_plan`; restored afterwards."""
    before = declared_names()
    declare_names(["member_id", "insurance-plan"])
    yield
    declare_names(before)


VARS = {
    "patient_name": "Jane Doe",
    "dob": "1962-03-04",
    "mrn": "48213377",
    "address": "12 Elm Street",
    "member_id": "AB-99172",
    "email": "jane.doe@example.com",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi, is this Jane Doe?", "Hi, is this [NAME]?"),
        ("Yes, this is jane.", "Yes, this is [NAME]."),
        ("Is Ms. Doe available?", "Is Ms. [NAME] available?"),
        ("DOE, JANE is on the chart.", "[NAME] is on the chart."),
        ("That's D-O-E, Doe.", "That's [NAME], [NAME]."),
        ("My date of birth is March fourth, nineteen sixty two.", "My date of birth is [DOB]."),
        ("It's 3/4/1962.", "It's [DOB]."),
        ("Born March 4th 1962, in Ohio.", "Born [DOB], in Ohio."),
        ("The fourth of March, nineteen sixty-two.", "[DOB]."),
        ("DOB 03/04/62, correct?", "DOB [DOB], correct?"),
        ("On file: 1962-03-04.", "On file: [DOB]."),
        ("Mar. 4, 1962", "[DOB]"),
        ("My MRN is four eight two one, three three, double seven.", "My MRN is [MRN]."),
        ("MRN 48213377.", "MRN [MRN]."),
        ("It's 4821-3377.", "It's [MRN]."),
        ("I live at 12 Elm Street.", "I live at [ADDRESS]."),
        ("I live at twelve Elm St., apartment 3.", "I live at [ADDRESS], apartment 3."),
        ("Member ID A B nine nine one seven two.", "Member ID [VARIABLE]."),
        ("member id ab-99172", "member id [VARIABLE]"),
        ("Email jane dot doe at example dot com.", "Email [EMAIL]."),
        # Near misses stay.
        ("The appointment is March 4th at 2 p.m.", None),
        ("Janet called about the 1963 records.", None),
        ("Room 4821 is on the left.", None),
    ],
)
def test_variable_forms(text: str, expected: str | None) -> None:
    assert redact_text(text, VARS) == (text if expected is None else expected)


def test_counts_per_placeholder() -> None:
    r = redact_detailed("Jane Doe, born 3/4/1962, MRN 48213377, cell 404-555-0187.", VARS)
    assert r.text == "[NAME], born [DOB], MRN [MRN], cell [PHONE]."
    assert r.counts == {"NAME": 1, "DOB": 1, "MRN": 1, "PHONE": 1}


def test_other_dates_and_names_formats() -> None:
    v = {"name": "Dr. Luis García-Lopez", "date_of_birth": "11/23/2001"}
    assert (
        redact_text("Luis was born November twenty-third, two thousand one.", v) == "[NAME] was born [DOB]."
    )
    assert redact_text("García-Lopez, 11-23-01", v) == "[NAME], [DOB]"


def test_phone_variable_said_without_country_code() -> None:
    v = {"callback_number": "+1 646 555 0199"}
    assert redact_text("call six four six, five five five, oh one nine nine", v) == "call [PHONE]"


@pytest.mark.parametrize(
    ("key", "placeholder"),
    [
        ("patient_name", "NAME"),
        ("first_name", "NAME"),
        ("guardian_name", "NAME"),
        ("dob", "DOB"),
        ("Date of Birth", "DOB"),
        ("mrn", "MRN"),
        ("address", "ADDRESS"),
        ("phone", "PHONE"),
        ("email", "EMAIL"),
        ("ssn", "SSN"),
        ("member_id", "VARIABLE"),  # not declared by this deployment
        ("callback 555-123-4567 jane.doe@example.com", "VARIABLE"),
        ("Jane Doe DOB 1962", "VARIABLE"),
    ],
)
def test_placeholder_names(key: str, placeholder: str) -> None:
    assert placeholder_for(key) == placeholder


def test_declared_names_keep_their_placeholder(declared: None) -> None:
    assert placeholder_for("member_id") == "MEMBER_ID"
    assert placeholder_for("Insurance Plan") == "INSURANCE_PLAN"
    assert placeholder_for("other_id") == "VARIABLE"
    assert {"MEMBER_ID", "INSURANCE_PLAN", "VARIABLE", "NAME"} <= known_placeholders()
    assert redact_text("member id ab-99172", VARS) == "member id [MEMBER_ID]"


def test_caller_chosen_names_never_become_placeholders() -> None:
    name = "callback 555-123-4567 jane.doe@example.com"
    r = redact_detailed("the code is zebra forty", {name: "zebra forty"})
    assert r.text == "the code is [VARIABLE]" and r.counts == {"VARIABLE": 1}


@pytest.mark.parametrize("bad", ["555-123-4567", "jane.doe@example.com", "x" * 40, "", "9lives"])
def test_declared_names_must_be_identifiers(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^declared variable name 2 is not") as err:
        declare_names(["member_id", bad])
    assert bad not in str(err.value) or not bad


def test_entities_configurable_and_variables_still_apply() -> None:
    only_email = Redactor(entities={"EMAIL"})
    text = "Jane's card is 4111 1111 1111 1111, email a.b@example.com, SSN 123-45-6789."
    assert (
        only_email(text, {"name": "Jane"})
        == "[NAME]'s card is 4111 1111 1111 1111, email [EMAIL], SSN 123-45-6789."
    )
    assert Redactor()(text) == "Jane's card is [CARD], email [EMAIL], SSN [SSN]."


def test_empty_and_blank_values_are_ignored() -> None:
    assert redact_text("nothing here", {"name": "", "mrn": "   "}) == "nothing here"
