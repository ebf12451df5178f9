"""Sentence and budget splitting."""

import pytest

from ttscli.segment import halve, segment, split_sentences, split_to_budget


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ('He said "stop." Then left!', ['He said "stop."', "Then left!"]),
        ("Wait... what?!  Really", ["Wait...", "what?!", "Really"]),
        ("no end punctuation", ["no end punctuation"]),
        ("", []),
        ("   ", []),
        ("Dr. Smith came. Mrs. Jones too.", ["Dr. Smith came.", "Mrs. Jones too."]),
        ("J. F. Kennedy spoke.", ["J. F. Kennedy spoke."]),
        ("It cost a lot, etc. Then more.", ["It cost a lot, etc.", "Then more."]),
        ("Say {HH AH0 L OW1}. Now.", ["Say {HH AH0 L OW1}.", "Now."]),
        ("Line one.\nLine two.", ["Line one.", "Line two."]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text, budget, expected",
    [
        ("short", 10, ["short"]),
        ("one, two, three", 8, ["one,", "two,", "three"]),
        ("one, two, three", 9 + 5, ["one, two,", "three"]),
        ("alpha beta gamma delta", 11, ["alpha beta", "gamma delta"]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
        ("x {HH AH0} y", 10, ["x {HH AH0}", "y"]),
    ],
)
def test_split_to_budget(text, budget, expected):
    assert split_to_budget(text, budget) == expected


@pytest.mark.parametrize("budget", [1, 3, 7, 20, 50])
def test_pieces_respect_budget_and_keep_every_word(budget):
    text = (
        "It was the best of times, it was the worst of times; it was the age of wisdom: "
        "it was the age of foolishness. Supercalifragilisticexpialidocious!"
    )
    pieces = segment(text, budget)
    assert all(0 < len(p) <= budget for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_halve_splits_near_the_middle():
    assert halve("one two three four") == ["one two", "three four"]
    assert halve("abcdef") == ["abc", "def"]


def test_short_sentences_are_joined_to_the_next_within_the_budget():
    assert segment("Yes. I think this is a sentence.", 100) == ["Yes. I think this is a sentence."]
    assert segment("Yes. I think this is a sentence.", 20) == [
        "Yes.",
        "I think this is a",
        "sentence.",
    ]
    long = "This one is long enough. So is this sentence."
    assert segment(long, 100) == ["This one is long enough.", "So is this sentence."]
