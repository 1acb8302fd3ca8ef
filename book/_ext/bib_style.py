"""Sphinx extension: the reference list labelled and sorted by author and year.

The chapters cite "(Romera-Paredes and Torr, 2016)" (``bibtex_reference_style: author_year``);
pybtex's own labels for the list itself are numbers or alpha keys such as ``[RPT16]``, which a
reader cannot match to a citation. This registers a pybtex style, ``author_year``, whose labels
read as the citations do ("Romera-Paredes and Torr, 2016", "Zheng et al., 2015") and whose list
is sorted by author, then year. Name particles stay with the surname ("De Brabandere", "Van
Gool": the .bib writes such names "Last, First"), and LaTeX accents become letters.
"""

from __future__ import annotations

import codecs

import latexcodec  # noqa: F401  (registers the "latex" codec)
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as Plain
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    text = " ".join(person.prelast_names + person.last_names)
    return codecs.decode(text.encode(), "latex").replace("{", "").replace("}", "")


class AuthorYearLabels(BaseLabelStyle):
    """"A, 2016", "A and B, 2016", "A et al., 2016"; a second work of the same label gets a letter."""

    def format_labels(self, sorted_entries):
        labels = []
        for entry in sorted_entries:
            names = [_surname(p) for p in entry.persons.get("author", [])]
            who = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
            labels.append(f"{who}, {entry.fields.get('year', 'n.d.')}")
        for label in labels:
            same = [k for k, other in enumerate(labels) if other == label]
            if len(same) > 1:
                for letter, k in zip("abcdefghij", same):
                    labels[k] = f"{label}{letter}"
        yield from labels


class AuthorYearStyle(Plain):
    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
