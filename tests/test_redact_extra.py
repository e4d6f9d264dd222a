"""Hand-written generalisation lines, one or more per corpus rule, in the corpus's style but never seen
in it: other numbers, names, phrasings. `None` means the line must come out unchanged (hard negative)."""

from __future__ import annotations

import pytest

from redact import redact_text

# (text, expected); expected None = unchanged.
CASES: list[tuple[str, str | None]] = [
    (
        "You can reach me at nine seven two, five five five, oh one eight eight.",
        "You can reach me at [PHONE].",
    ),
    ("My cell is 214-555-0199, call anytime after noon.", "My cell is [PHONE], call anytime after noon."),
    ("Her number's (305) 555-0142.", "Her number's [PHONE]."),
    ("It's seven one eight, uh, five five five, um, oh one three two.", "It's [PHONE]."),
    ("Call the nurse line at 1-877-555-0110, option 3.", "Call the nurse line at [PHONE], option 3."),
    ("The fax number is five one two, five five five, oh one double nine.", "The fax number is [PHONE]."),
    ("Dial plus four four, two oh, seven nine four six, oh one two three.", "Dial [PHONE]."),
    ("My mobile in the UK is 07700 900123.", "My mobile in the UK is [PHONE]."),
    ("Reach Dr. Lee at 608.555.0117 ext 22.", "Reach Dr. Lee at [PHONE]."),
    ("Okay. Three one two. Five five five. Oh one four nine. Got it?", "Okay. [PHONE]. Got it?"),
    ("The number is 555-0166, extension 19.", "The number is [PHONE]."),
    ("Text me at 9175550123 when you're outside.", "Text me at [PHONE] when you're outside."),
    ("It's eight eight eight, five five five, oh one two two.", "It's [PHONE]."),
    (
        "My husband's cell is four two five, five five five, oh one oh one, and mine is four two five, "
        "five five five, oh one oh two.",
        "My husband's cell is [PHONE], and mine is [PHONE].",
    ),
    ("Call 555 0139 if the pharmacy is closed.", "Call [PHONE] if the pharmacy is closed."),
    ("Her number in Sydney is +61 2 5550 4321.", "Her number in Sydney is [PHONE]."),
    ("Our Paris office is 01 99 00 12 34.", "Our Paris office is [PHONE]."),
    ("He's at 0491 570 110 most days.", "He's at [PHONE] most days."),
    ("The Berlin clinic is 030 5550 1234.", "The Berlin clinic is [PHONE]."),
    ("In Bangalore you can call +91 80 5550 7788.", "In Bangalore you can call [PHONE]."),
    ("The number is 2125550176, no dashes.", "The number is [PHONE], no dashes."),
    ("It's six four six, five five five, let me think, oh one two seven.", "It's [PHONE]."),
    ("Call 555-0100 or 555-0101.", "Call [PHONE] or [PHONE]."),
    ("You can call +1 (212) 555-0100 from abroad.", "You can call [PHONE] from abroad."),
    ("Um, it's four oh four. Five five five. Oh one two six.", "Um, it's [PHONE]."),
    (
        "The toll-free line is one eight eight eight, five five five, oh one five five.",
        "The toll-free line is [PHONE].",
    ),
    ("It's five five five, twenty one, thirty four.", "It's [PHONE]."),
    ("My email is daniel.kim@example.com.", "My email is [EMAIL]."),
    ("Send it to nora underscore james at example dot org.", "Send it to [EMAIL]."),
    ("It's p dot singh at example dot net.", "It's [EMAIL]."),
    (
        "You can email olivia dash park at example dot com for the forms.",
        "You can email [EMAIL] for the forms.",
    ),
    ("My email is S-M-I-T-H at example dot org, all lowercase.", "My email is [EMAIL], all lowercase."),
    ("It's r as in Robert, e, y, e, s at example dot com.", "It's [EMAIL]."),
    ("Email the nurse at nurse.line@clinic.example.net.", "Email the nurse at [EMAIL]."),
    ("Write to billing at example dot net with the statement.", "Write to [EMAIL] with the statement."),
    ("His address is mark.t at example.org.", "His address is [EMAIL]."),
    ("It's jlee, J-L-E-E, at example dot com.", "It's [EMAIL]."),
    ("My email is tom seventy seven at example dot com.", "My email is [EMAIL]."),
    ("Email me at c dot nguyen at example dot org, thanks.", "Email me at [EMAIL], thanks."),
    (
        "I'm at the hospital now, but you can email hr at example dot com.",
        "I'm at the hospital now, but you can email [EMAIL].",
    ),
    ("It's FRONT.DESK@EXAMPLE.COM in capitals.", "It's [EMAIL] in capitals."),
    (
        "Send the results to kate underscore m underscore b at labs dot example dot org.",
        "Send the results to [EMAIL].",
    ),
    ("My card number is 4000 0566 5566 5556.", "My card number is [CARD]."),
    (
        "The Mastercard is 5105 1051 0510 5100, expiration 04/27.",
        "The Mastercard is [CARD], expiration 04/27.",
    ),
    ("It's three seven one four, four nine six three five three, nine eight four three one.", "It's [CARD]."),
    (
        "Use the Discover, six oh one one, oh oh oh nine, nine oh one three, nine four two four.",
        "Use the Discover, [CARD].",
    ),
    ("Card number 4111-1111-1111-1111, and the CVV is 737.", "Card number [CARD], and the CVV is 737."),
    ("My debit card is 4000 0566 5566 5557.", "My debit card is [CARD]."),
    ("Here's the JCB, 3530 1113 3330 0000.", "Here's the JCB, [CARD]."),
    ("Put it on 378282246310005 please.", "Put it on [CARD] please."),
    (
        "The Visa ending in 1111 is expired, so use 4012 8888 8888 1881.",
        "The Visa ending in 1111 is expired, so use [CARD].",
    ),
    (
        "It's five five five five, uh, five five five five, five five five five, four four four four.",
        "It's [CARD].",
    ),
    ("My social is 123-45-6789.", "My social is [SSN]."),
    (
        "Social security number, one two three, four five, six seven eight nine.",
        "Social security number, [SSN].",
    ),
    ("Your appointment is on June 3rd at 2:15 p.m.", None),
    ("Take 40 mg of atorvastatin at bedtime.", None),
    ("The claim number is 7788 1234 5566 9901, keep it handy.", None),
    ("Your confirmation number is 555-0199.", None),
    ("The member ID is 884 201 7735.", None),
    ("Her oxygen was 94 percent and heart rate 88.", None),
    ("He's 72 and his weight is 180 pounds.", None),
    ("The copay is $25.00 for generics and $50 for brand.", None),
    ("We moved to zip code 60614 last year.", None),
    ("Go to room 312, it's on the third floor.", None),
    ("Press 9 to repeat this message.", None),
    ("For emergencies call 911.", None),
    ("Ask for extension 2207 at the front desk.", None),
    ("Your Rx number is 4471902.", None),
    ("The NPI for Dr. Chen is 1669428715.", None),
    ("Visit example.org slash refills to request a refill.", None),
    ("I was born in 1948, and I retired in 2010.", None),
    ("Count backwards from ten: ten, nine, eight, seven, six, five, four.", None),
    ("The A1C was 7.2 and the TSH was 2.5.", None),
    ("It's at the corner of Oak and 5th.", None),
    ("Her blood pressure was one forty over ninety.", None),
    ("There's a small dot on the X-ray, right at the edge.", None),
    ("Oh, okay, oh I understand.", None),
    ("Your balance is one hundred twenty dollars.", None),
    ("We'll see you on the twenty second at three thirty.", None),
    ("Her MRN is five five five, two one three, four four.", None),
    ("Repeat after me: seven, four, one, nine, three, eight, two.", None),
    ("The tracking number is 1234 5678 9012 3456.", None),
    ("You can log in at portal dot example dot com with your code.", None),
    ("Check the schedule online at example.net/schedule before you come.", None),
    ("The prescription is 2 puffs twice a day, 200 doses per inhaler.", None),
    ("Her glucose was 212 at 7 a.m. and 145 at noon.", None),
    ("Your deductible is $1,500 and you've met $1,250 so far.", None),
    ("I take five hundred milligrams of metformin twice a day.", None),
    ("The invoice number is 4410 2231 8876.", None),
    ("He lives at 4410 Birch Road, apartment 12.", None),
    ("Please arrive at 8:45, fifteen minutes early.", None),
    ("Dot, my sister, will drive me at noon.", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[f"x{i:03d}" for i in range(len(CASES))])
def test_extra_line(text: str, expected: str | None) -> None:
    assert redact_text(text) == (text if expected is None else expected)


def test_enough_diverse_lines() -> None:
    assert len(CASES) >= 60
    assert sum(e is None for _, e in CASES) >= 20  # hard negatives
    for placeholder in ("[PHONE]", "[EMAIL]", "[CARD]", "[SSN]"):
        assert any(e and placeholder in e for _, e in CASES)
