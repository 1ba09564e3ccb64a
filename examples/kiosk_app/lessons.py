"""The kiosk's lessons: what a student can open, and how answers are checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Question:
    """One exercise: a prompt and its expected answer (compared without spaces)."""

    prompt: str
    answer: str

    def check(self, given: str) -> bool:
        return given.replace(" ", "").lower() == self.answer.replace(" ", "").lower()


@dataclass(frozen=True)
class Lesson:
    """A lesson as Timeback knows it (``id``, ``name``, ``course``), with its exercises."""

    id: str
    name: str
    course: dict[str, Any]
    questions: tuple[Question, ...]
    xp_per_answer: int = 10

    @property
    def subject(self) -> str:
        return str(self.course.get("subject") or self.course.get("code"))

    @property
    def grade(self) -> str:
        grade = self.course.get("grade")
        return "" if grade is None else str(grade)


LESSONS: tuple[Lesson, ...] = (
    Lesson(
        id="fractions-halves-quarters",
        name="Fractions: halves and quarters",
        course={"subject": "Math", "grade": 3},
        questions=(
            Question("What is 1/2 + 1/4 ?", "3/4"),
            Question("How many quarters make a whole?", "4"),
            Question("Which is bigger: 2/4 or 1/3 ?", "2/4"),
        ),
    ),
    Lesson(
        id="reading-main-idea",
        name="Reading: finding the main idea",
        course={"subject": "Reading", "grade": 3},
        questions=(
            Question("A paragraph's main idea is often in its first ...?", "sentence"),
            Question("Details ______ the main idea (one word).", "support"),
        ),
    ),
    Lesson(
        id="science-water-cycle",
        name="Science: the water cycle",
        course={"subject": "Science", "grade": 4},
        questions=(
            Question("Water turning into vapour is called ...?", "evaporation"),
            Question("Vapour turning into droplets is called ...?", "condensation"),
            Question("Rain, snow and hail are all forms of ...?", "precipitation"),
        ),
    ),
)


def lesson_by_id(lesson_id: str) -> Lesson:
    """The lesson with this slug (KeyError if there is none)."""
    for lesson in LESSONS:
        if lesson.id == lesson_id:
            return lesson
    raise KeyError(lesson_id)
