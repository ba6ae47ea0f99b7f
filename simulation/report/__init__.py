"""The run report: ``report.html``, ``summary.json`` and the CSVs of a simulation run.

* :mod:`simulation.report.files`: :func:`~simulation.report.files.write_run` writes them all
  into one directory;
* :mod:`simulation.report.page`: :func:`~simulation.report.page.render_report`, the
  self-contained HTML page, made of the sections in :mod:`simulation.report.market` and
  :mod:`simulation.report.participants` with the inline SVG charts of
  :mod:`simulation.report.charts`;
* :mod:`simulation.report.headline`: the headline figures, on the page and printed at the
  end of a run;
* :mod:`simulation.report.display`: how numbers, times and names are written for reading.

Everything but the file writers is a pure function of a
:class:`~simulation.record.RunRecord`: the same record gives the same text.
"""
