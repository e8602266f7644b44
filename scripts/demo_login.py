#!/usr/bin/env python3
"""Log in to the running demo as a browser would, and print the page the app shows.

Usage: python3 scripts/demo_login.py [URL] [LOGIN] [PASSWORD]
(defaults: http://127.0.0.1:4180/ john john). Standard library only.
Started at the sign-in page (URL .../oauth2/sign_in) it clicks its "Sign in with ..."
button first; with `just demo-github` the mock GitHub needs no form (it logs in as octocat).
"""
import html.parser
import http.cookiejar
import sys
import urllib.parse
import urllib.request


class FormParser(html.parser.HTMLParser):
    """Collects the first form's action and its named inputs."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
            self.in_form = True
        elif tag == "input" and self.in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False


class ButtonParser(html.parser.HTMLParser):
    """Collects the href of the sign-in page's button (`<a class="button">`)."""

    def __init__(self):
        super().__init__()
        self.href = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("class") == "button" and self.href is None:
            self.href = a.get("href")


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4180/"
    login = sys.argv[2] if len(sys.argv) > 2 else "john"
    password = sys.argv[3] if len(sys.argv) > 3 else "john"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("Accept", "text/html")]

    resp = opener.open(url, timeout=10)
    page = resp.read().decode()
    if urllib.parse.urlsplit(resp.geturl()).path.endswith("/sign_in"):
        button = ButtonParser()
        button.feed(page)
        if button.href is None:
            sys.exit(f"no sign-in button on {resp.geturl()}")
        resp = opener.open(urllib.parse.urljoin(resp.geturl(), button.href), timeout=10)
        page = resp.read().decode()
    # Submit the IdP's forms (login, then consent if shown) until we are back at the app.
    for _ in range(4):
        if "/interaction/" not in resp.geturl():
            break
        form = FormParser()
        form.feed(page)
        if form.action is None:
            sys.exit(f"no form on {resp.geturl()}")
        data = dict(form.fields)
        if "login" in data or "password" in data:
            data.update(login=login, password=password)
        target = urllib.parse.urljoin(resp.geturl(), form.action)
        resp = opener.open(target, data=urllib.parse.urlencode(data).encode(), timeout=10)
        page = resp.read().decode()
    print(f"final URL: {resp.geturl()} (HTTP {resp.status})")
    print(page)


if __name__ == "__main__":
    main()
