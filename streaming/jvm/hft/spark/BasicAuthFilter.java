package hft.spark;

import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.FilterConfig;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.Base64;

/**
 * HTTP basic authentication for Spark's web UIs (the standalone master's and workers', their JSON and REST
 * pages included): {@code spark.ui.filters=hft.spark.BasicAuthFilter} with the parameters
 * {@code spark.hft.spark.BasicAuthFilter.param.user} and {@code ...param.passwordFile} (a 0600 file holding the
 * password, so the password itself is in no Spark property, page or log).
 *
 * <p>Spark has no login of its own for its UIs, only servlet filters; every request without the right user and
 * password is answered 401 with a basic-auth challenge.
 */
public class BasicAuthFilter implements Filter {
  private byte[] expected;

  @Override
  public void init(FilterConfig config) throws ServletException {
    String user = config.getInitParameter("user");
    String passwordFile = config.getInitParameter("passwordFile");
    if (user == null || user.isEmpty() || passwordFile == null || passwordFile.isEmpty()) {
      throw new ServletException("hft.spark.BasicAuthFilter needs the parameters user and passwordFile");
    }
    String password;
    try {
      password = Files.readString(Paths.get(passwordFile), StandardCharsets.UTF_8).strip();
    } catch (IOException e) {
      throw new ServletException("hft.spark.BasicAuthFilter cannot read its password file " + passwordFile, e);
    }
    if (password.isEmpty()) {
      throw new ServletException("hft.spark.BasicAuthFilter: the password file " + passwordFile + " is empty");
    }
    expected = ("Basic " + Base64.getEncoder().encodeToString(
        (user + ":" + password).getBytes(StandardCharsets.UTF_8))).getBytes(StandardCharsets.UTF_8);
  }

  @Override
  public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
      throws IOException, ServletException {
    String given = ((HttpServletRequest) request).getHeader("Authorization");
    // constant time: the comparison does not tell how much of a guess was right
    if (given != null && MessageDigest.isEqual(expected, given.getBytes(StandardCharsets.UTF_8))) {
      chain.doFilter(request, response);
      return;
    }
    HttpServletResponse out = (HttpServletResponse) response;
    out.setHeader("WWW-Authenticate", "Basic realm=\"spark\", charset=\"UTF-8\"");
    out.sendError(HttpServletResponse.SC_UNAUTHORIZED);
  }

  @Override
  public void destroy() {}
}
