package hft.spark;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's raw local file system with permissions set through java.nio instead of a forked {@code chmod}.
 *
 * <p>Without Hadoop's native library (pyspark ships none), {@link RawLocalFileSystem#setPermission} runs
 * {@code chmod} in a child process, and every file created with a permission, as each checkpoint file of a
 * streaming query is, pays for a fork of the whole JVM.
 */
public class NioLocalFileSystem extends RawLocalFileSystem {
  private static final PosixFilePermission[] BITS = {  // from the most significant of the 9 mode bits
    PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE,
    PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
    PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE,
  };

  static Set<PosixFilePermission> posix(FsPermission permission) {
    int mode = permission.toShort() & 0777;
    Set<PosixFilePermission> out = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < BITS.length; i++) {
      if ((mode & (1 << (8 - i))) != 0) {
        out.add(BITS[i]);
      }
    }
    return out;
  }

  @Override
  public void setPermission(Path p, FsPermission permission) throws IOException {
    try {
      Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(permission));
    } catch (UnsupportedOperationException e) {  // not a POSIX file system: Hadoop's own way
      super.setPermission(p, permission);
    }
  }
}
