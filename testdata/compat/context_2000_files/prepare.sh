# 2,000 small files in 20 directories, generated (deterministic content, mode 0644)
set -e
rm -rf context/many
for d in $(seq -w 0 19); do
  mkdir -p "context/many/d$d"
  for f in $(seq -w 0 99); do
    printf 'file %s of dir %s\n' "$f" "$d" > "context/many/d$d/f$f.txt"
  done
done
chmod -R u=rwX,go=rX context/many
