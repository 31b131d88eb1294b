# reproducible archives (generated: git keeps no tarballs here)
set -e
rm -rf src && mkdir -p src/a/b src/x
printf 'in a\n' > src/a/file.txt
printf 'in b\n' > src/a/b/deep.txt
printf '#!/bin/sh\n' > src/x/run.sh
ln -sf file.txt src/a/link
chmod 0755 src/x/run.sh; chmod 0700 src/x; chmod 0644 src/a/file.txt src/a/b/deep.txt; chmod 0755 src/a src/a/b
T="tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C src"
$T -cf context/plain.tar a x
$T --owner=1000 --group=1000 -cf - a | gzip -n -9 > context/compressed.tar.gz
$T -cf context/disguised.bin x
rm -rf src
