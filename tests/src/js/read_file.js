// Postwarden e2e: read a small file as Thunderbird sees it (for the
// /etc/thunderbird bind-mount check). arguments[0] = absolute path.
// Resolves with the file's text, or null when it does not exist.
const path = arguments[0];
return (async () => {
  if (!(await IOUtils.exists(path))) {
    return null;
  }
  return IOUtils.readUTF8(path);
})();
