"""The markdown report of the divergence analysis, written from the manifest's figures.

Its layout is the reference analyzer's, line for line, except the finding paragraph, which the
reference hard-codes ("The 12 divergent rows are size-only") and streamer writes from the data
(SPEC section 4, deliberate departures). When the data does say that, the words are the same.
"""

from __future__ import annotations

import json
from typing import Any

TITLE = "# Checkpoint 10D0 Websocket Reconstruction Divergence Analysis"
SCOPE = ("Offline analysis only. No Kubernetes Deployment, CronJob, PVC, secret, service, image tag, "
         "or rclone configuration was modified.")


def row_line(row: dict[str, Any]) -> str:
    """The report line of one divergence row (``row`` as in ``divergence_rows``).

    Cost: O(length of the line); raises KeyError when ``row`` lacks a field it prints.
    """
    affects = row["affects"]
    return (
        f"- comparison line `{row['comparison_line']}`, REST checkpoint `{row['rest_checkpoint_sequence']}`, "
        f"`{row['market_slug']}` `{row['outcome']}`: `{row['classification']}`, bid deltas "
        f"`{affects['bid_size_delta_count']}`, ask deltas `{affects['ask_size_delta_count']}`, "
        f"websocket lines `{row['applied_ws_line_span']}`."
    )


def finding(results: int, size_only: int, quote_or_membership: int, affect_counts: dict[str, int],
            without_context: int, unanalysed: int = 0, unread: int = 0, context_limit: int | None = None) -> str:
    """The finding paragraph: what the rows say, in the reference's words where they agree.

    ``unanalysed``: divergent rows skipped because their fields were unusable; ``unread``:
    comparison lines that could not be read, and comparison files that ended early (both block
    the gate); ``context_limit`` 0 says that no context was asked for, not that none was found.

    Cost: O(1). Raises nothing.
    """
    if results == 0:
        sentences = [] if unanalysed or unread else ["There are no divergent rows in this sample."]
    elif size_only == results:
        if results == 1:
            sentences = ["The 1 divergent row is size-only in this sample. It preserved best bid, best ask, "
                         "spread, level counts, and top-N price membership."]
        else:
            sentences = [f"The {results} divergent rows are size-only in this sample. All divergent rows "
                         "preserved best bid, best ask, spread, level counts, and top-N price membership."]
    else:
        detail = ", ".join(f"{label}: {affect_counts.get(name, 0)}" for name, label in (
            ("best_bid", "best bid"), ("best_ask", "best ask"), ("spread", "spread"),
            ("level_count", "level count"), ("top_n_price_membership", "top-N price membership")))
        sentences = [f"{size_only} of the {results} divergent rows are size-only in this sample; "
                     f"{quote_or_membership} affect best bid, best ask, spread, level counts or top-N price "
                     f"membership ({detail})."]
    if results and without_context == 0:
        sentences.append("Nearby token-specific websocket context is included in the manifest with raw line "
                         "numbers and compact price-change fields.")
    elif results and context_limit == 0:
        sentences.append("No websocket context was asked for (--context-limit 0).")
    elif results:
        sentences.append(f"{without_context} of the divergent rows have no token-specific websocket context "
                         "in the capture.")
    if unanalysed:
        sentences.append(f"{unanalysed}{' more' if results else ''} divergent "
                         f"{'row was' if unanalysed == 1 else 'rows were'} not analysed: "
                         "fields of the wrong type (input_problems in the manifest). Unexplained, "
                         f"{'it blocks' if unanalysed == 1 else 'they block'} the gate.")
    if unread:
        sentences.append("Some comparison rows could not be read (skipped lines, or a file that ended early: "
                         "input_problems in the manifest). Divergences among them would be unexplained, so "
                         "they block the gate.")
    return " ".join(sentences)


def head(manifest: dict[str, Any], finding_text: str) -> str:
    """Everything before the divergence row lines, ending with the section's blank line.

    Cost: O(size of the count objects); raises KeyError when ``manifest`` lacks a key it prints.
    """
    summary = manifest["analysis_summary"]
    lines = [
        TITLE,
        "",
        f"Status: {manifest['gate_status']}  ",
        f"Created: {manifest['ended_at_utc']}  ",
        "Production ready: no  ",
        "Live Kubernetes collector modified: no",
        "",
        "## Scope",
        "",
        SCOPE,
        "",
        "## Comparison Counts",
        "",
        f"- Comparison status counts: `{json.dumps(manifest['comparison_status_counts'], sort_keys=True)}`.",
        f"- Divergence category counts: `{json.dumps(manifest['divergence_category_counts'], sort_keys=True)}`.",
        f"- Divergence affect counts: `{json.dumps(manifest['divergence_affect_counts'], sort_keys=True)}`.",
        "",
        "## Finding",
        "",
        f"- Best bid affected: `{manifest['best_bid_affected']}`.",
        f"- Best ask affected: `{manifest['best_ask_affected']}`.",
        f"- Spread affected: `{manifest['spread_affected']}`.",
        f"- Level count affected: `{manifest['level_count_affected']}`.",
        f"- Top-N price membership affected: `{manifest['top_n_price_membership_affected']}`.",
        f"- All divergences size-only: `{summary['all_divergences_size_only']}`.",
        f"- Raw context included for all divergences: `{summary['raw_context_included_for_all_divergences']}`.",
        "",
        finding_text,
        "",
        "## Divergence Rows",
        "",
    ]
    return "\n".join(lines) + "\n"


def tail(manifest: dict[str, Any]) -> str:
    """Everything after the divergence row lines.

    Cost: O(length of the text); raises KeyError when ``manifest`` lacks a key it prints.
    """
    lines = [
        "",
        "## Gate",
        "",
        manifest["gate_status"],
        "",
        "## Strongest Fake-Progress Risk",
        "",
        manifest["strongest_fake_progress_risk"],
        "",
        "## Next Smallest Step",
        "",
        manifest["next_smallest_step"],
        "",
    ]
    return "\n".join(lines)
