# hard links: git cannot hold them
rm -f context/tree/hard1 context/tree/sub/hard2 context/tree/hardsrc.txt
printf 'hard linked\n' > context/tree/hardsrc.txt
ln context/tree/hardsrc.txt context/tree/hard1
ln context/tree/hardsrc.txt context/tree/sub/hard2
chmod 0640 context/tree/hardsrc.txt
