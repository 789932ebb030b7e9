"""A submission that crashes: it expects a labels file the course data does not have."""

import csv

with open("capts_train/labels.csv") as file:  # The labels are in the file names; there is no such file.
    labels = {row[0]: row[1] for row in csv.reader(file)}
