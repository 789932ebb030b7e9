"""Grading students' submissions: run their train.py, load their model safely, score it.

    python grade.py submissions/          # see grade.py --help

`grading.runner` runs a submission's training in a subprocess with a time
limit; `grading.inputs` fits the course images to the input a model declares;
`grading.grades` takes each submission through every step and writes grades.csv.
"""
