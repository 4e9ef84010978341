#!/usr/bin/env bash
# npm run package: build kmesh-<ver>-<rel>.<arch>.rpm (rpmbuild) and kmesh_<ver>-<rel>_<arch>.deb (dpkg-deb)
# into dist-pkg/, both from one staged install tree:
#   /usr/lib/kmesh/{package.json,dist/src,node_modules}  JS and production dependencies
#   /usr/lib/kmesh/bpf/*.o                                BPF objects (the launcher sets KMESH_BPF_DIR)
#   /usr/bin/{kmesh-daemon,kmeshctl}                      launchers
#   <unitdir>/kmesh.service, /usr/share/dbus-1/system.d/org.openeuler.Kmesh1.conf, /etc/kmesh/kmesh.toml
# Options: --skip-build (use the existing dist/ and build/bpf), --deb-only, --rpm-only, --lint (run lintian/rpmlint).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=1 deb=1 rpm=1 lint=0
for a in "$@"; do
  case "$a" in
    --skip-build) build=0 ;;
    --deb-only) rpm=0 ;;
    --rpm-only) deb=0 ;;
    --lint) lint=1 ;;
    *) echo "package.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

version=$(node -p "require('./package.json').version")
release=${KMESH_RELEASE:-1}
deb_arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
rpm_arch=$(uname -m)
out="$root/dist-pkg"

if [[ $build == 1 ]]; then npm run build; fi
[[ -f dist/src/bin/kmesh-daemon.js && -f dist/src/bin/kmeshctl.js ]] || { echo "package.sh: run npm run build first" >&2; exit 1; }
compgen -G 'build/bpf/*.o' >/dev/null || { echo "package.sh: no build/bpf/*.o; run npm run build:bpf" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kmesh-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT

# stage ROOT UNITDIR: the install tree shared by both formats (only the unit directory differs).
stage() {
  local r=$1 unitdir=$2 lib=$1/usr/lib/kmesh
  install -d "$lib/dist" "$lib/bpf" "$r/usr/bin" "$r$unitdir" "$r/usr/share/dbus-1/system.d" "$r/etc/kmesh" \
    "$r/usr/share/doc/kmesh" "$r/usr/share/man/man8"
  # JS: sources only (no tests, benches or source maps); package.json makes Node treat dist as ESM.
  cp -a dist/src "$lib/dist/src"
  find "$lib/dist" -name '*.map' -delete
  node -e '
    const p = require("./package.json");
    const keep = { name: p.name, version: p.version, description: p.description, license: p.license,
                   type: p.type, engines: p.engines, dependencies: p.dependencies };
    process.stdout.write(JSON.stringify(keep, null, 2) + "\n");' >"$lib/package.json"
  # Production dependencies only, as installed locally (the lock file tells dev from prod).
  node packaging/scripts/copy-prod-modules.mjs "$root" "$lib" >/dev/null
  # Tests, examples and CI files of dependencies are never loaded at run time.
  find "$lib/node_modules" -depth -type d \( -name test -o -name tests -o -name __tests__ -o -name example \
    -o -name examples -o -name .github -o -name .husky -o -name benchmarks -o -name bench \) -exec rm -rf {} +
  # koffi's C++ sources and Node-API headers are for building it from source; the prebuilt module is used.
  rm -rf "$lib/node_modules/koffi/vendor" "$lib/node_modules/koffi/doc"
  find "$lib/node_modules/koffi" -type f \( -name "*.h" -o -name "*.hh" -o -name "*.c" -o -name "*.cc" -o -name "*.cpp" \) -delete
  # Also their docs and helper scripts (lintian: privacy-breach in HTML docs, non-executable scripts).
  find "$lib/node_modules" -type f \( -name '*.ts' ! -name '*.d.ts' -o -name '*.map' -o -name '.*' -o -name '*.html' \
    -o -name '*.md' -o -name '*.markdown' -o -name '*.sh' \) -delete
  # koffi ships a musl build next to the glibc one; only the glibc one can load here.
  find "$lib/node_modules" -path '*/koffi-linux-*/musl_*' -prune -exec rm -rf {} +
  # Node never executes these files directly: drop exec bits and shebangs so neither linter sees scripts that
  # claim an interpreter they are never run with.
  find "$lib" -type f -perm /111 ! -name '*.node' -exec chmod a-x {} +
  find "$lib" -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' \) -exec sed -i '1{/^#!/d}' {} +
  find "$lib" -type f -empty -delete
  find "$lib" -depth -type d -empty -delete
  install -d "$lib/bpf"
  install -m 0644 build/bpf/*.o "$lib/bpf/"
  install -m 0755 packaging/bin/kmesh-daemon packaging/bin/kmeshctl "$r/usr/bin/"
  install -m 0644 systemd/kmesh.service "$r$unitdir/"
  install -m 0644 packaging/dbus/org.openeuler.Kmesh1.conf "$r/usr/share/dbus-1/system.d/"
  install -m 0644 packaging/etc/kmesh.toml "$r/etc/kmesh/kmesh.toml"
  for d in README.md docs/operating.md LICENSE; do
    if [[ -f $d ]]; then install -m 0644 "$d" "$r/usr/share/doc/kmesh/"; fi
  done
  for m in packaging/man/*.8; do gzip -9n <"$m" >"$r/usr/share/man/man8/$(basename "$m").gz"; done
  find "$r" -type d -exec chmod 0755 {} +
  find "$r" -type f ! -perm /111 -exec chmod 0644 {} +
}

mkdir -p "$out"

if [[ $deb == 1 ]]; then
  droot=$work/deb
  stage "$droot" /lib/systemd/system
  install -m 0644 packaging/deb/copyright "$droot/usr/share/doc/kmesh/copyright"
  rm -f "$droot/usr/share/doc/kmesh/LICENSE" # Debian points at /usr/share/common-licenses instead
  printf 'kmesh (%s-%s) stable; urgency=medium\n\n  * Package built from the kmesh source tree.\n\n -- Kmesh Maintainers <kmesh@openeuler.org>  %s\n' \
    "$version" "$release" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
    gzip -9n >"$droot/usr/share/doc/kmesh/changelog.Debian.gz"
  install -d "$droot/usr/share/lintian/overrides"
  install -m 0644 packaging/deb/lintian-overrides "$droot/usr/share/lintian/overrides/kmesh"
  install -d "$droot/DEBIAN"
  size=$(du -sk --exclude=DEBIAN "$droot" | cut -f1)
  # koffi's native module links libc/libstdc++: let dpkg-shlibdeps name the versions (it wants a debian/control).
  mkdir -p "$work/shlibs/debian"
  printf 'Source: kmesh\n\nPackage: kmesh\nArchitecture: any\n' >"$work/shlibs/debian/control"
  shlibs=$(cd "$work/shlibs" && find "$droot/usr/lib/kmesh" -name '*.node' -exec dpkg-shlibdeps -O {} + 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
  sed -e "s/@VERSION@/$version-$release/" -e "s/@ARCH@/$deb_arch/" -e "s/@SIZE@/$size/" \
    -e "s/@SHLIBS@/${shlibs:-libc6 (>= 2.25), libgcc-s1, libstdc++6}/" \
    packaging/deb/control.in >"$droot/DEBIAN/control"
  install -m 0644 packaging/deb/conffiles "$droot/DEBIAN/conffiles"
  install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$droot/DEBIAN/"
  (cd "$droot" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
  chmod 0644 "$droot/DEBIAN/md5sums"
  debfile="$out/kmesh_${version}-${release}_${deb_arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$droot" "$debfile" >/dev/null
  echo "built $debfile"
  if [[ $lint == 1 ]]; then lintian --info --display-info "$debfile" || true; fi
fi

if [[ $rpm == 1 ]]; then
  rroot=$work/rpm-stage
  stage "$rroot" /usr/lib/systemd/system
  # %files list from the staged tree: config and docs get their rpm attributes.
  flist=$work/files.list
  {
    echo '%dir /etc/kmesh'
    echo '%config(noreplace) /etc/kmesh/kmesh.toml'
    echo '%dir /usr/lib/kmesh'
    (cd "$rroot" && find usr -type f -o -type l) | LC_ALL=C sort | while read -r f; do
      case "/$f" in
        /usr/share/doc/kmesh/LICENSE) echo "%license \"/$f\"" ;;
        /usr/share/doc/kmesh/*) echo "%doc \"/$f\"" ;;
        /usr/share/man/*) echo "%doc \"/$f\"" ;;
        *) printf '"/%s"\n' "$f" ;;
      esac
    done
    (cd "$rroot" && find usr/lib/kmesh -mindepth 1 -type d) | LC_ALL=C sort | sed 's|^|%dir /|'
  } >"$flist"
  rpmbuild -bb --quiet \
    --define "_topdir $work/rpmbuild" \
    --define "kmesh_stage $rroot" \
    --define "kmesh_filelist $flist" \
    --define "kmesh_version $version" \
    --define "kmesh_release $release" \
    --define "_build_id_links none" \
    --target "$rpm_arch" \
    packaging/rpm/kmesh.spec
  rpmfile="$out/kmesh-${version}-${release}.${rpm_arch}.rpm"
  cp "$work/rpmbuild/RPMS/$rpm_arch/kmesh-${version}-${release}.${rpm_arch}.rpm" "$rpmfile"
  echo "built $rpmfile"
  if [[ $lint == 1 ]]; then rpmlint -r packaging/rpm/kmesh.rpmlintrc "$rpmfile" || true; fi
fi
