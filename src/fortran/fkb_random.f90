!! Counter-based random numbers: each value is a pure function of (seed, stream, position),
!! so results do not depend on thread scheduling or on the order of calls, and a Gaussian
!! draw is never infinite or NaN (the uniform feeding the logarithm is never 0).
module fkb_random
  use iso_fortran_env, only: int64, real64
  implicit none
  private
  public :: mix64, uniform_open, gaussian

  integer(int64), parameter :: GOLDEN = -7046029254386353131_int64   ! 0x9E3779B97F4A7C15
  real(real64), parameter :: TWO_PI = 6.283185307179586476925286766559_real64

contains

  pure integer(int64) function mix64(a, b)
    !! A well-mixed 64-bit hash of the pair (a, b) (splitmix64's finaliser; wraps, -fwrapv).
    integer(int64), intent(in) :: a, b
    integer(int64) :: z
    z = a + GOLDEN * (b + 1)
    z = ieor(z, shiftr(z, 30)) * (-4658895280553007687_int64)
    z = ieor(z, shiftr(z, 27)) * (-7723592293110705685_int64)
    mix64 = ieor(z, shiftr(z, 31))
  end function mix64

  pure real(real64) function uniform_open(key)
    !! A uniform value in (0, 1] from 53 bits of the key.
    integer(int64), intent(in) :: key
    uniform_open = (real(shiftr(key, 11), real64) + 1) * 2.0_real64**(-53)
  end function uniform_open

  pure real(real64) function gaussian(key, position)
    !! A standard normal value for `position` of the stream `key` (Box-Muller).
    integer(int64), intent(in) :: key, position
    real(real64) :: u1, u2
    u1 = uniform_open(mix64(key, 2 * position))
    u2 = uniform_open(mix64(key, 2 * position + 1))
    gaussian = sqrt(-2 * log(u1)) * cos(TWO_PI * u2)
  end function gaussian

end module fkb_random
