"""Phantom chest radiographs with grounded reports, in the exact PadChest-GR release format.

The main entry point is :func:`write_phantom_release` (``site=`` picks a site style of
:data:`SITES`: faint findings, location-free sentences, annotation margins, acquisition
and wording); :func:`plan_release` and
:func:`render_study` expose the plan and the renderer (e.g. to render a study with and
without its findings). Everything is numpy + Pillow + scipy.ndimage and deterministic
for a seed.
"""

from ricl.data.phantom.findings import (
    FindingSpec,
    PixelBox,
    RenderedStudy,
    StudySpec,
    render_study,
    size_cm,
)
from ricl.data.phantom.plan import DEFAULT_SIZES, PlannedFinding, PlannedStudy, plan_release
from ricl.data.phantom.sites import (
    EXTERNAL_SITES,
    INTERNAL_SITES,
    SITE_SIDECAR,
    SITES,
    WORDINGS,
    SiteStyle,
    SiteStyleError,
    annotate_boxes,
    get_site,
)
from ricl.data.phantom.vocab import (
    BILATERAL_ZONES,
    FINDING_TYPES,
    LABEL_GROUPS,
    LABELS,
    LOBES,
    LOCATIONS,
    TYPE_ZONES,
)
from ricl.data.phantom.writer import (
    CSV_COLUMNS,
    IMAGES_SUBDIR,
    PhantomSummary,
    write_phantom_release,
)

__all__ = [
    "BILATERAL_ZONES",
    "CSV_COLUMNS",
    "DEFAULT_SIZES",
    "EXTERNAL_SITES",
    "FINDING_TYPES",
    "IMAGES_SUBDIR",
    "INTERNAL_SITES",
    "LABELS",
    "LABEL_GROUPS",
    "LOBES",
    "LOCATIONS",
    "SITES",
    "SITE_SIDECAR",
    "TYPE_ZONES",
    "WORDINGS",
    "FindingSpec",
    "PhantomSummary",
    "PixelBox",
    "PlannedFinding",
    "PlannedStudy",
    "RenderedStudy",
    "SiteStyle",
    "SiteStyleError",
    "StudySpec",
    "annotate_boxes",
    "get_site",
    "plan_release",
    "render_study",
    "size_cm",
    "write_phantom_release",
]
