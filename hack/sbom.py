"""The CycloneDX SBOM of the operator image, from what is installed in it (run by hack/release).

    python hack/sbom.py ROOTFS IMAGE_REF IMAGE_DIGEST OUT.json

ROOTFS is the image's unpacked root filesystem (hack/local-cluster's image cache). The components are every
Python distribution in the image's virtualenv (name, version, license as declared, purl pkg:pypi/…) and every
Debian package of its base (purl pkg:deb/debian/…, from /var/lib/dpkg/status); the BOM's subject is the image
(type container, its reference and manifest digest). Written as CycloneDX 1.6 JSON by cyclonedx-python-lib.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import sys

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL


def python_components(rootfs: pathlib.Path) -> list[Component]:
    site = sorted(rootfs.glob("opt/venv/lib/python3*/site-packages"))
    if not site:
        raise SystemExit(f"sbom: no /opt/venv/lib/python3*/site-packages in {rootfs}")
    out = []
    for dist in importlib.metadata.distributions(path=[str(p) for p in site]):
        name, version = dist.metadata["Name"], dist.version
        expression = dist.metadata.get("License-Expression")
        licenses: list[LicenseExpression | DisjunctiveLicense] = []
        if expression:
            licenses.append(LicenseExpression(expression))
        elif dist.metadata.get("License") and len(dist.metadata["License"]) < 80:
            licenses.append(DisjunctiveLicense(name=dist.metadata["License"]))
        out.append(
            Component(
                type=ComponentType.LIBRARY,
                name=name,
                version=version,
                purl=PackageURL("pypi", name=name.lower().replace("_", "-"), version=version),
                bom_ref=f"pypi:{name.lower()}@{version}",
                licenses=licenses,
                description=dist.metadata.get("Summary") or None,
            )
        )
    return sorted(out, key=lambda c: c.name.lower())


def debian_components(rootfs: pathlib.Path) -> list[Component]:
    status = rootfs / "var" / "lib" / "dpkg" / "status"
    if not status.exists():
        return []
    out = []
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if "installed" not in fields.get("Status", "") or "Package" not in fields:
            continue
        name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")
        out.append(
            Component(
                type=ComponentType.LIBRARY,
                name=name,
                version=version,
                purl=PackageURL("deb", "debian", name, version, qualifiers={"arch": arch} if arch else None),
                bom_ref=f"deb:{name}@{version}",
            )
        )
    return sorted(out, key=lambda c: c.name)


def main() -> None:
    rootfs, ref, digest, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
    repo, _, tag = ref.rpartition(":")
    bom = Bom()
    bom.metadata.component = Component(
        type=ComponentType.CONTAINER,
        name=repo,
        version=tag,
        bom_ref=f"{ref}@{digest}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest.split(":", 1)[1])],
        purl=PackageURL(
            "oci",
            name=repo.rsplit("/", 1)[-1],
            version=digest,
            qualifiers={"repository_url": repo, "tag": tag},
        ),
    )
    for component in [*python_components(rootfs), *debian_components(rootfs)]:
        bom.components.add(component)
    out.write_text(JsonV1Dot6(bom).output_as_string(indent=1))
    print(f"sbom: {out}: {len(bom.components)} components", file=sys.stderr)


if __name__ == "__main__":
    main()
