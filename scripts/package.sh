#!/usr/bin/env bash
# Build the release: every binary for every target, the .deb and .rpm
# packages (nfpm), and SHA256SUMS, into dist/. Called by `make package`
# (packages only) and `make release` (everything).
#
#   scripts/package.sh OUT_DIR VERSION LDFLAGS [--binaries]
#
# PACKAGE_TARGETS, if set, limits the targets to those labels (e.g.
# "amd64 armv6"), for tests.
#
# Targets: the hub on 64-bit platforms only (badger); the agent also on
# 32-bit ARM and x86. ARM package names: armhf is ARMv7 (Debian, Raspberry
# Pi 2/3/4 on 32-bit), armv6 is for Raspberry Pi OS on a Pi Zero/1 (its
# architecture is called armhf too, but it runs ARMv6 binaries), armel is
# Debian's soft-float ARM (ARMv5 and up).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?out dir} version=${2:?version} ldflags=${3:?ldflags}
binaries=${4:-}

# label GOARCH GOARM nfpm-arch
hub_targets=("amd64 amd64 - amd64" "arm64 arm64 - arm64" "riscv64 riscv64 - riscv64")
agent_targets=("${hub_targets[@]}" "armhf arm 7 arm7" "armv6 arm 6 arm6" "armel arm 5 arm5" "i386 386 - 386")

# A release tag vX.Y.Z[-…] gives the package version X.Y.Z[-…]; any other
# build (git describe without a tag: a commit, maybe -dirty) is
# 0.0.0~git.<commit>, which sorts before every release.
pkgversion=${version#v}
if ! [[ $pkgversion =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]]; then
	pkgversion="0.0.0~git.${pkgversion//-/.}"
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# nfpm, built once for this run (without the target's GOARCH).
env -u GOARCH -u GOARM -u GOOS GOBIN="$work/tools" go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
nfpm=("$work/tools/nfpm")

wanted() { [ -z "${PACKAGE_TARGETS:-}" ] || [[ " $PACKAGE_TARGETS " == *" $1 "* ]]; }

build() { # name label goarch goarm
	local name=$1 label=$2 goarch=$3 goarm=$4 bin="$work/bin/$1-linux-$2"
	mkdir -p "$work/bin"
	env -u GOARCH -u GOARM CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOARM="${goarm/-/}" \
		go build -trimpath -ldflags "$ldflags" -o "$bin" "./${name#alicia-}"
	echo "$bin"
}

package() { # name label nfpm-arch bin
	local name=$1 label=$2 arch=$3 bin=$4 scripts="$work/scripts/$1"
	if [ ! -d "$scripts" ]; then
		mkdir -p "$scripts"
		for s in postinstall preremove postremove; do
			sed "s/@NAME@/$name/" "packaging/scripts/$s.sh" >"$scripts/$s.sh"
			chmod 0755 "$scripts/$s.sh"
		done
	fi
	for fmt in deb rpm; do
		# nfpm must not see a GOARCH of its own (it would package for it).
		# nfpm expands the environment in a few fields only: fill in the
		# definition's ${…} here.
		sed -e "s|\${VERSION}|$pkgversion|g" -e "s|\${ARCH}|$arch|g" -e "s|\${BIN}|$bin|g" -e "s|\${SCRIPTS}|$scripts|g" \
			"packaging/nfpm-${name#alicia-}.yaml" >"$work/nfpm.yaml"
		if ! env -u GOARCH -u GOARM "${nfpm[@]}" package --config "$work/nfpm.yaml" --packager "$fmt" \
			--target "$out/${name}_${pkgversion}_${label}.$fmt" >"$work/nfpm.log" 2>&1; then
			cat "$work/nfpm.log" >&2
			echo "package.sh: nfpm failed for $name $label .$fmt" >&2
			exit 1
		fi
	done
	echo "  $name $label: ${name}_${pkgversion}_${label}.deb .rpm"
}

release() { # name targets…
	local name=$1 t label goarch goarm arch bin
	shift
	for t in "$@"; do
		read -r label goarch goarm arch <<<"$t"
		wanted "$label" || continue
		bin=$(build "$name" "$label" "$goarch" "$goarm")
		[ -n "$binaries" ] && cp "$bin" "$out/$name-linux-$label"
		package "$name" "$label" "$arch" "$bin"
	done
}

release alicia-hub "${hub_targets[@]}"
release alicia-agent "${agent_targets[@]}"
cp scripts/install.sh "$out/install.sh"
(cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS)
echo "$out: $(ls "$out" | wc -l) files, SHA256SUMS"
