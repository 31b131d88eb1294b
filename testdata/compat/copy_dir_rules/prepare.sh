# modes git does not keep
chmod 0700 context/dir/inner
chmod 0750 context/dir
chmod 0755 context/dir/inner/deeper
chmod 0600 context/dir/inner/in.txt
chmod 0644 context/a.txt context/dir/top.txt context/dir/inner/deeper/d.txt
