#!/bin/sh
# The layering rules of CONVENTIONS.md that a compiler does not check by
# itself, checked on the source tree:
#  - every private header (*-priv.h, hv-internal.h) carries the #error guard
#    that keeps other modules out (the guard is what the compiler checks);
#  - the API calls no libvirt (hv_*) function: it reaches hosts through the
#    operations of capability modules.
# Exits non-zero naming every violation.
set -u
root=${1:?usage: check-layering.sh SOURCE_ROOT}
fail=0
for h in "$root"/src/*/*-priv.h "$root"/src/hv/hv-internal.h; do
        [ -e "$h" ] || continue
        if ! grep -q '^#error' "$h"; then
                echo "FAIL: ${h#"$root"/} has no #error guard for other modules"
                fail=1
        fi
done
hits=$(grep -nE '\bhv_[a-z_]+\(' "$root"/src/api/*.c || true)
if [ -n "$hits" ]; then
        echo "FAIL: src/api calls libvirt (hv_*) directly:"
        echo "$hits"
        fail=1
fi
[ $fail -eq 0 ] && echo "layering: private headers guarded, no hv_* in src/api"
exit $fail
