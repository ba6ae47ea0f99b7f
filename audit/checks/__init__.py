"""The audit's checks: each compares what was published or recorded with what it must be.

Every module here is pure. A check appends :class:`~audit.checks.violations.Violation` s (with
the numbers that show them) and notes to a :class:`~audit.checks.violations.CheckLog`;
:mod:`audit.report` runs them per interval and on the whole market and builds the report
(its docstring lists what each check compares).

* :mod:`audit.checks.violations`: the check names, violations and the log they go to;
* :mod:`audit.checks.book`: ``signatures`` and ``book_root`` (the published set);
* :mod:`audit.checks.commitment`: ``commitment`` (calldata trades bound to the event);
* :mod:`audit.checks.defaulters`: ``defaulters`` (parties dropped at commit were short);
* :mod:`audit.checks.clearing`: ``reclear`` and ``properties``;
* :mod:`audit.checks.meters`: registrations and meter keys over time, reading signers;
* :mod:`audit.checks.settlement`: ``settlement`` (the model re-settles every interval);
* :mod:`audit.checks.market`: ``conservation`` and ``code``, once for the whole market.
"""
