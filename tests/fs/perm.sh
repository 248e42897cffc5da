#!/bin/bash
# tests/fs/perm.sh - permissions on a real cairnfs mount, against a plain
# directory of the file system holding $TMPDIR as the reference: access
# checks on every mount, the rules of chown and chmod, setuid and setgid
# cleared as the kernel does, setgid directories, modes after tools that set
# POSIX ACLs (cp -p, cp -a, tar -xp, sed -i, mv), and a metadata record that
# cannot be decoded failing closed. Non-root callers run through setpriv.
#
#   CAIRNFS=/path/to/cairnfs CAIRN=/path/to/cairn tests/fs/perm.sh
#
# Exits 77 (skipped) without root, FUSE or setpriv.
set -u
export LC_ALL=C

. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup perm
chmod 755 "$T" # other users reach the mount and the reference below it
REF=$T/ref
mkdir -p "$REF"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
	echo "skipped: needs root and setpriv"
	exit 77
fi

U=65534 # nobody
G=65534
GRP=100 # a group nobody is not in
as_user() { setpriv --reuid=$U --regid=$G --clear-groups "$@"; }
# fails COMMAND...: passes when the command fails.
fails() { ! "$@"; }
# same DESCRIPTION SCRIPT: runs the shell SCRIPT as root in $REF and in the
# mount (cwd, $1 the directory) and compares `stat` of everything below.
same() {
	local d=$1 s=$2 a b
	(cd "$REF" && sh -c "$s" sh "$REF") >/dev/null 2>&1
	(cd "$MNT" && sh -c "$s" sh "$MNT") >/dev/null 2>&1
	a=$(cd "$REF" && find . -mindepth 1 ! -name '.cairn' -printf '%p %M %u %g\n' | sort)
	b=$(cd "$MNT" && find . -mindepth 1 -printf '%p %M %u %g\n' | sort)
	if [ "$a" = "$b" ]; then
		ok "$d"
	else
		bad "$d"
		diff <(echo "$a") <(echo "$b") | head -20
	fi
}
# same_user DESCRIPTION SCRIPT: the same, the script run as nobody in a
# directory nobody owns; also compares each command's exit status.
same_user() {
	local d=$1 s=$2 a b ra rb
	for top in "$REF" "$MNT"; do
		mkdir -p "$top/u" && chown $U:$G "$top/u"
	done
	ra=$(cd "$REF/u" && as_user sh -c "$s" sh "$REF/u" 2>/dev/null)
	rb=$(cd "$MNT/u" && as_user sh -c "$s" sh "$MNT/u" 2>/dev/null)
	a=$(cd "$REF" && find . -mindepth 1 -printf '%p %M %u %g\n' 2>/dev/null | sort)
	b=$(cd "$MNT" && find . -mindepth 1 -printf '%p %M %u %g\n' 2>/dev/null | sort)
	if [ "$a" = "$b" ] && [ "$ra" = "$rb" ]; then
		ok "$d"
	else
		bad "$d"
		diff <(echo "$a"; echo "$ra") <(echo "$b"; echo "$rb") | head -20
	fi
	rm -rf "$REF/u" "$MNT/u"
}

# ---- 1. the mounting user on a mount without allow_other ----------------------
# Root without capabilities is a plain user that the kernel lets in (the
# mount's owner) and checks as it would any other.
mount_fs || exit 1
plain() { setpriv --bounding-set=-all --inh-caps=-all "$@"; }
(
	cd "$MNT" || exit 1
	echo x >ro && chmod 444 ro
	mkdir d555 && chmod 555 d555
	mkdir d000 && chmod 000 d000
	echo y >mine && chown $U:$G mine
)
check "no allow_other: writing a 0444 file fails" fails plain sh -c "echo y >'$MNT/ro'"
check "no allow_other: creating in a 0555 directory fails" fails plain touch "$MNT/d555/x"
check "no allow_other: listing a 000 directory fails" fails plain ls "$MNT/d000"
check "no allow_other: chown of a file to another user fails" fails plain chown $U "$MNT/ro"
check "no allow_other: chmod of another user's file fails" fails plain chmod 4755 "$MNT/mine"
check "no allow_other: the modes are unchanged" \
	test "$(stat -c %u:%a "$MNT/ro" "$MNT/mine" | tr '\n' ' ')" = "0:444 $U:644 "
rm -rf "${MNT:?}"/*
umount_fs || bad "unmount"

mount_fs -o allow_other || exit 1

# ---- 2. as another user on an allow_other mount: as a plain directory -----------
same_user "user: writes to a 0444 file are refused" \
	'echo x >f; chmod 444 f; echo y >f; echo $?; cat f'
same_user "user: creating in a 0555 directory is refused" \
	'mkdir d; chmod 555 d; touch d/x; echo $?; chmod 755 d'
same_user "user: a 000 directory cannot be listed" \
	'mkdir d; touch d/x; chmod 000 d; ls d; echo $?; chmod 755 d'
same_user "user: chown to root and chgrp to a foreign group are refused" \
	"echo x >f; chown 0:0 f; echo \$?; chgrp $GRP f; echo \$?; chmod 4755 f; echo \$?"
same_user "user: writing a setuid/setgid file clears both bits" \
	'echo x >f; chmod 6755 f; echo y >>f; stat -c %a f'
same_user "user: truncating a setuid file clears the bit" \
	'echo x >f; chmod 4755 f; truncate -s 0 f; stat -c %a f'
same_user "user: chmod g+s of a file in a foreign group is dropped" \
	"echo x >f; chmod 2755 f; stat -c %a f"
same "root: chown of a setuid file clears setuid" \
	'echo x >f; chmod 6755 f; chown 1:1 f; mkdir d; chmod 6755 d; chown 1:1 d'

# ---- 3. setgid directories -------------------------------------------------------
same "setgid directory: new entries take its group, subdirectories its bit" \
	"mkdir sg; chgrp $GRP sg; chmod 2775 sg; echo x >sg/f; mkdir sg/sub; mkdir sg/sub/deeper;
	 ln -s f sg/l; mkdir sg/sub/plain; chmod g-s sg/sub; touch sg/sub/f2"
same_user "setgid directory: a user's files there take the group too" \
	"mkdir sg; chgrp $G sg; chmod 2777 sg; echo x >sg/f; mkdir sg/sub"

# ---- 4. tools that set POSIX ACLs keep ext4's modes ---------------------------------
SRC=$T/src
mkdir -p "$SRC/dir/sub"
echo a >"$SRC/dir/f644" && chmod 644 "$SRC/dir/f644"
echo b >"$SRC/dir/f755" && chmod 755 "$SRC/dir/f755"
echo c >"$SRC/dir/sub/f600" && chmod 600 "$SRC/dir/sub/f600"
chmod 755 "$SRC/dir" "$SRC/dir/sub"
tar -C "$SRC" -cf "$T/src.tar" dir
same "cp -p, cp -a, tar -xp, sed -i and mv keep the modes" \
	"cp -p '$SRC/dir/f644' cpp; cp -a '$SRC/dir' cpa; mkdir tx; tar -C tx -xpf '$T/src.tar';
	 cp '$SRC/dir/f644' sed; sed -i s/a/z/ sed; sed -i s/z/y/ cpa/f755;
	 cp -a '$SRC/dir' '$T/mvsrc-'\$(basename \"\$1\"); mv '$T/mvsrc-'\$(basename \"\$1\") mv"
check "setting system.posix_acl_access is refused (EOPNOTSUPP)" \
	fails setfattr -n system.posix_acl_access -v 0sAgAAAAEABgD/////BAAEAP////8QAAAA/////yAABAD///// "$MNT/cpp"
check "other users still read files copied with cp -a" as_user cat "$MNT/cpa/f644"
# The kernel checks no permission for system.*: the file system must refuse.
echo x >"$MNT/rootfile" && chmod 644 "$MNT/rootfile"
check "user: setting system.* on root's file is refused" \
	fails as_user setfattr -n system.foo -v evil "$MNT/rootfile"
check "root: setting other system.* names is refused too (as on ext4)" \
	fails setfattr -n system.nfs4_acl -v x "$MNT/rootfile"
check "... and none is stored" fails sh -c "getfattr -d -m - '$MNT/rootfile' 2>/dev/null | grep -q system"

# ---- 5. a record that cannot be decoded fails closed -------------------------------
echo secret >"$MNT/bad"
chmod 600 "$MNT/bad"
umount_fs || bad "unmount"
"$CAIRN" -d "$DB" -x put '\0mbad' 'garbage' >/dev/null || bad "cannot write a bad record"
mount_fs -o allow_other || exit 1
check "a bad record: stat fails" fails stat "$MNT/bad"
out=$(stat "$MNT/bad" 2>&1)
check "a bad record: the error is EIO" grep -q "Input/output error" <<<"$out"
check "a bad record: listed, but not readable by anyone" fails as_user cat "$MNT/bad"
check "a bad record: never shown as 0644 owned by the mounting user" \
	fails sh -c "ls -l '$MNT' | grep ' bad\$' | grep -q '^-rw'"
check "a bad record: counted in .cairn/stats" \
	sh -c "grep -E '^fs_bad_records +[1-9]' '$MNT/.cairn/stats'"
check "a bad record: logged" grep -q "bad.*cannot be decoded" "$T/log"

umount_fs || bad "clean unmount"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
