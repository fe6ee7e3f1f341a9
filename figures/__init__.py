"""The paper's figures, drawn from saved runs (:func:`figures.draw.draw_all`)."""

#: every figure ``entropy-mech figures`` can draw (``--only``), in drawing order; torch-free for ``--help``
FIGURES = ("collapse", "law", "prediction", "covariance", "dynamics", "methods", "sweeps", "theory")
